// Package security is rangestore's transport security: certificates, the
// TLS configurations and gRPC credentials that use them, and the roles a
// certificate grants (issue 15). It has no knowledge of nodes or stores:
// node/, the commands and the Raft transport wire it.
//
// Certificates (certs.go). A certs directory holds, as CockroachDB's does:
//
//	ca.crt                       the CA certificate(s): a PEM bundle, every one trusted
//	node.crt, node.key           a node's certificate: CN "node", the node's hosts as
//	                             SANs, server and client authentication
//	client.USER.crt, .key        a client's: CN USER, client authentication only;
//	                             OU "admin" with create-client --admin
//
// The CA key lives at --ca-key, outside the directory nodes read. Keys are
// ECDSA P-256 in PKCS#8 PEM, written 0600 (certificates 0644), each to a
// temporary file renamed into place; an existing file is never replaced
// without Overwrite. Certificates are valid from an hour before their
// creation (clock skew between machines) for CA 10 y, node 5 y, client 5 y
// by default, and never outlive their CA (capped at its expiry). User
// "node" is reserved for node certificates.
//
// Loading (load.go) checks, before anything is used, and with an error
// naming the file: every file is present (and what it is for); the key
// gives no access to group or others (chmod 0600, as CockroachDB
// requires); every certificate is valid now ("expired on <date>", "not
// valid until <date>"); the certificate is signed by a CA of ca.crt and
// of the expected kind (a node certificate for user "node", a client
// certificate whose CN is the user otherwise). A failed load changes
// nothing.
//
// Manager (manager.go) holds one identity's checked material behind an
// atomic pointer. Reload re-reads the directory and swaps the material
// whole, or keeps the old one and says why (SIGHUP calls it). Handshakes
// read the material in use at their start: the server through
// GetConfigForClient, the gRPC client credentials by building the client
// configuration per handshake; established connections keep theirs.
// Session tickets are off, so no connection resumes past a rotation.
// Both sides require TLS 1.3. The server requires and verifies a client
// certificate against the CA; a client verifies the server against the CA
// and the dialled host, and requires a node certificate (CN "node"): a
// client certificate cannot act as a node. A node dials its peers with
// its node certificate; a CLI dials with client.USER (default root).
// There is no fallback from a missing client certificate to the node
// certificate: a node certificate grants node rights, not a user's.
// Certs and Expiries expose the serials and expiries in use (node
// status), Collector the metric rangestore_cert_expiry_seconds{kind}, the
// Unix time each kind expires (the earliest CA for ca). Paths gives the
// files for Dragonboat's MutualTLS settings, which read them when the
// Raft transport starts (server side) and at each outgoing connection.
//
// Roles (authz.go). A caller's identity is the CN of the leaf of its
// verified chain; Admin is user root or a client certificate with OU
// "admin" (trusted because only the CA key's holder issues
// certificates). Authorize(identity, full method) is pure and reads two
// tables, per service and per method:
//
//	grpc.health.v1.Health              everyone, even without a certificate
//	rangestore.v1.Internal             nodes only
//	rangestore.v1.KV, Discovery        clients (any client certificate; not nodes)
//	rangestore.v1.Admin, Backup        root and admin client certificates
//	  Admin/Ranges, Admin/TransferLease  also nodes (peers ask each other for
//	                                     their ranges and forward lease transfers)
//	grpc.reflection.*                  root and admin client certificates
//	anything else                      no one
//
// So a client cannot reach Internal.RangeBatch (which would bypass the
// user-span check) and a node certificate cannot be used as a client of
// KV. A refusal is a gRPC status made here: PERMISSION_DENIED naming the
// user, the full method and who may call it, or UNAUTHENTICATED for a
// caller without a verified certificate. These are statuses already, so
// gateway.ToStatus (the one mapping of range errors to codes) passes them
// through unchanged. Authorizer's Unary and Stream interceptors apply
// Authorize to every call; Insecure (--insecure) allows all.
//
// Invariants: a Manager never holds unchecked material; a new
// connection always uses the whole of one material (never the CA of one
// and the certificate of another); a service added to proto/ is closed
// until a rule names it.
package security
