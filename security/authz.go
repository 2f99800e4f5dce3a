package security

import (
	"context"
	"crypto/x509"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Identity is who a caller is, from its verified certificate.
type Identity struct {
	// User is the certificate's CN: NodeUser for a node, the client user
	// otherwise; empty for a caller without a verified certificate.
	User string
	// Admin: user root, or a client certificate with OU "admin".
	Admin bool
}

// IdentityOf is the identity a verified certificate carries.
func IdentityOf(c *x509.Certificate) Identity {
	u := c.Subject.CommonName
	return Identity{User: u, Admin: u == RootUser || u != NodeUser && isAdminCert(c)}
}

// PeerIdentity is the identity of the caller of a gRPC call: that of the
// leaf of its verified TLS chain. ok is false without one (a plaintext
// connection, or TLS without a verified client certificate).
func PeerIdentity(ctx context.Context) (id Identity, ok bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return Identity{}, false
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return Identity{}, false
	}
	return IdentityOf(ti.State.VerifiedChains[0][0]), true
}

// audience is who may call a method.
type audience uint8

const (
	// public: anyone, without a certificate.
	public audience = 1 << iota
	// nodes: node certificates (CN "node").
	nodes
	// clients: every client certificate (not a node's).
	clients
	// admins: root, and client certificates with OU "admin".
	admins
)

// serviceRules say who may call each service's methods; methodRules
// override them for single methods. A service with no rule is closed to
// everyone (a test checks that every service in proto/ has one).
var serviceRules = map[string]audience{
	"grpc.health.v1.Health": public,
	// Reflection describes the API only, but the rule is that
	// what is not listed is closed: operators (admins) may use it.
	"grpc.reflection.v1.ServerReflection":      admins,
	"grpc.reflection.v1alpha.ServerReflection": admins,
	"rangestore.v1.KV":                         clients,
	// Discovery serves clients' read routing (routing tables); nodes do
	// not call it.
	"rangestore.v1.Discovery": clients,
	// Backup exports the whole keyspace and holds back GC: an operator's
	// tool (restore writes through KV).
	"rangestore.v1.Backup":   admins,
	"rangestore.v1.Admin":    admins,
	"rangestore.v1.Internal": nodes,
}

var methodRules = map[string]audience{
	// Nodes ask their peers for their ranges (node list, node status,
	// applied indexes) and forward lease transfers to the leaseholder.
	"/rangestore.v1.Admin/Ranges":        admins | nodes,
	"/rangestore.v1.Admin/TransferLease": admins | nodes,
}

// allows says whether a admits id.
func (a audience) allows(id Identity) bool {
	switch {
	case a&public != 0:
		return true
	case id.User == "":
		return false
	case id.User == NodeUser:
		return a&nodes != 0
	}
	return a&clients != 0 || a&admins != 0 && id.Admin
}

// who says who a admits, for PERMISSION_DENIED messages.
func (a audience) who() string {
	var parts []string
	if a&nodes != 0 {
		parts = append(parts, `nodes (a node certificate, CN "node")`)
	}
	if a&clients != 0 {
		parts = append(parts, "clients (a client certificate; a node certificate is for node-to-node traffic only)")
	}
	if a&admins != 0 && a&clients == 0 {
		parts = append(parts, "root or an admin client certificate (cert create-client --admin)")
	}
	if len(parts) == 0 {
		return "no rule allows it"
	}
	return "only " + strings.Join(parts, " and ") + " may call it"
}

// ruleFor is the audience of a full method name (/service/method).
func ruleFor(fullMethod string) (audience, bool) {
	if a, ok := methodRules[fullMethod]; ok {
		return a, true
	}
	svc, _, ok := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	if !ok || !strings.HasPrefix(fullMethod, "/") {
		return 0, false
	}
	a, ok := serviceRules[svc]
	return a, ok
}

// Authorize decides whether id may call fullMethod (/package.Service/
// Method): nil, or a gRPC status error, UNAUTHENTICATED for a caller
// without a certificate and PERMISSION_DENIED naming the user and the
// method otherwise. It is pure.
//
// The rules: grpc.health.v1 is open to all; Internal is for nodes only;
// KV and Discovery for clients (not for node certificates); Admin,
// Backup and reflection for root and admin client certificates, except
// Admin.Ranges and Admin.TransferLease, which nodes call on their peers
// too. Anything else is refused.
func Authorize(id Identity, fullMethod string) error {
	a, ok := ruleFor(fullMethod)
	if ok && a.allows(id) {
		return nil
	}
	if id.User == "" {
		return status.Errorf(codes.Unauthenticated,
			"%s needs a verified client certificate (mutual TLS with a certificate signed by the cluster CA)", fullMethod)
	}
	return status.Errorf(codes.PermissionDenied, "user %q may not call %s: %s", id.User, fullMethod, a.who())
}

// Authorizer holds the gRPC server interceptors that check every call
// with Authorize against the caller's PeerIdentity. Insecure (the
// --insecure mode, plaintext) allows every call.
type Authorizer struct {
	Insecure bool
}

func (a Authorizer) check(ctx context.Context, fullMethod string) error {
	if a.Insecure {
		return nil
	}
	id, _ := PeerIdentity(ctx)
	return Authorize(id, fullMethod)
}

// Unary is the unary server interceptor.
func (a Authorizer) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := a.check(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

// Stream is the stream server interceptor.
func (a Authorizer) Stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if err := a.check(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	return h(srv, ss)
}

// String describes an identity for logs.
func (id Identity) String() string {
	switch {
	case id.User == "":
		return "unauthenticated"
	case id.Admin:
		return fmt.Sprintf("%s (admin)", id.User)
	}
	return id.User
}
