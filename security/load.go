package security

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

// Kinds of certificates.
const (
	KindCA     = "ca"
	KindNode   = "node"
	KindClient = "client"
)

// CertInfo describes one certificate (List, Manager.Certs).
type CertInfo struct {
	Path string
	Kind string // KindCA, KindNode, KindClient, or "unknown" (List only)
	// User is the subject's CN: "node" for a node certificate, the user
	// for a client certificate.
	User string
	// Admin: a client certificate whose subject has OU "admin".
	Admin bool
	// Serial is the serial number in hex.
	Serial    string
	NotBefore time.Time
	NotAfter  time.Time
	// Hosts are the subject alternative names (DNS names, then IPs).
	Hosts []string
}

func infoOf(path, kind string, c *x509.Certificate) CertInfo {
	hosts := slices.Clone(c.DNSNames)
	for _, ip := range c.IPAddresses {
		hosts = append(hosts, ip.String())
	}
	return CertInfo{Path: path, Kind: kind, User: c.Subject.CommonName, Admin: isAdminCert(c),
		Serial: fmt.Sprintf("%x", c.SerialNumber), NotBefore: c.NotBefore, NotAfter: c.NotAfter, Hosts: hosts}
}

func isAdminCert(c *x509.Certificate) bool {
	return slices.Contains(c.Subject.OrganizationalUnit, AdminOU)
}

// kindOfFile is the kind of a certificate file by its name.
func kindOfFile(name string) string {
	switch {
	case name == CAFile:
		return KindCA
	case name == NodeCertFile:
		return KindNode
	case strings.HasPrefix(name, "client.") && strings.HasSuffix(name, ".crt") && len(name) > len("client..crt"):
		return KindClient
	}
	return "unknown"
}

// List describes every certificate in the .crt files of dir (several for
// a ca.crt that holds more than one CA), by file name.
func List(dir string) ([]CertInfo, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("certs directory: %w", err)
	}
	var out []CertInfo
	for _, e := range ents {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".crt") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		certs, err := readCerts(p, "a certificate file")
		if err != nil {
			return nil, err
		}
		for _, c := range certs {
			out = append(out, infoOf(p, kindOfFile(e.Name()), c))
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return kindOrder(out[i].Kind) < kindOrder(out[j].Kind) })
	return out, nil
}

func kindOrder(k string) int {
	switch k {
	case KindCA:
		return 0
	case KindNode:
		return 1
	case KindClient:
		return 2
	}
	return 3
}

// purpose says what a file of a certs directory is for, for errors.
func purpose(name string) string {
	switch {
	case name == CAFile:
		return "the CA certificate, which verifies every node and client certificate (rangestore cert create-ca)"
	case name == NodeCertFile:
		return "the node certificate, this node's identity to clients and peers (rangestore cert create-node)"
	case name == NodeKeyFile:
		return "the node certificate's key (rangestore cert create-node)"
	case strings.HasPrefix(name, "client.") && strings.HasSuffix(name, ".crt"):
		u := strings.TrimSuffix(strings.TrimPrefix(name, "client."), ".crt")
		return fmt.Sprintf("user %s's client certificate (rangestore cert create-client %s)", u, u)
	case strings.HasPrefix(name, "client.") && strings.HasSuffix(name, ".key"):
		u := strings.TrimSuffix(strings.TrimPrefix(name, "client."), ".key")
		return fmt.Sprintf("user %s's client key (rangestore cert create-client %s)", u, u)
	}
	return "a certificate file"
}

func missing(path string) error {
	return fmt.Errorf("missing %s: %s", path, purpose(filepath.Base(path)))
}

// readCerts reads the PEM certificates of path.
func readCerts(path, what string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, missing(path)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s (%s): %w", path, what, err)
	}
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s (%s): certificate %d: %w", path, what, len(out)+1, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s (%s) holds no PEM certificate", path, what)
	}
	return out, nil
}

// checkKeyMode refuses a key file that group or others may access (as
// CockroachDB does).
func checkKeyMode(path, what string) error {
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return missing(path)
	}
	if err != nil {
		return fmt.Errorf("%s (%s): %w", path, what, err)
	}
	return keyModeError(path, what, st.Mode())
}

// keyModeError is the verdict on a key file's mode.
func keyModeError(path, what string, mode fs.FileMode) error {
	if !mode.IsRegular() {
		return fmt.Errorf("%s (%s) is not a regular file (mode %s)", path, what, mode)
	}
	if perm := mode.Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%s (%s) has mode %04o, which gives group or others access; a key must be private to its owner: run chmod 0600 %s", path, what, perm, path)
	}
	return nil
}

// checkValidity says whether c (of path, described by what) is valid at
// now.
func checkValidity(c *x509.Certificate, path, what string, now time.Time) error {
	if now.Before(c.NotBefore) {
		return fmt.Errorf("%s (%s, serial %x) is not valid until %s", path, what, c.SerialNumber, fmtTime(c.NotBefore))
	}
	if now.After(c.NotAfter) {
		return fmt.Errorf("%s (%s, serial %x) expired on %s", path, what, c.SerialNumber, fmtTime(c.NotAfter))
	}
	return nil
}

// Paths are the files of a loaded identity: the CA bundle, the
// certificate and its key (for components that read files themselves,
// such as Dragonboat's MutualTLS settings).
type Paths struct {
	CA, Cert, Key string
}

// PathsFor returns the files of user's identity in dir: node.crt/node.key
// for NodeUser, client.USER.crt/.key otherwise.
func PathsFor(dir, user string) Paths {
	if user == NodeUser {
		return Paths{CA: filepath.Join(dir, CAFile), Cert: filepath.Join(dir, NodeCertFile), Key: filepath.Join(dir, NodeKeyFile)}
	}
	return Paths{CA: filepath.Join(dir, CAFile), Cert: filepath.Join(dir, ClientCertFile(user)), Key: filepath.Join(dir, ClientKeyFile(user))}
}

// material is one loaded, checked set of certificates: immutable once
// made, swapped whole by Manager.Reload.
type material struct {
	user  string
	paths Paths
	cas   []*x509.Certificate
	pool  *x509.CertPool
	cert  tls.Certificate
	leaf  *x509.Certificate
	infos []CertInfo
}

// loadMaterial reads and checks user's identity in dir at now: every file
// present, the key private, every certificate valid at now, the
// certificate signed by a CA of ca.crt and of the right kind (a node
// certificate for NodeUser: CN "node", server and client use; a client
// certificate whose CN is user otherwise).
func loadMaterial(dir, user string, now time.Time) (*material, error) {
	if user != NodeUser {
		if err := checkUser(user); err != nil {
			return nil, err
		}
	}
	p := PathsFor(dir, user)
	for _, f := range []string{p.CA, p.Cert, p.Key} {
		if _, err := os.Stat(f); errors.Is(err, fs.ErrNotExist) {
			return nil, missing(f)
		}
	}
	what := "the node certificate"
	if user != NodeUser {
		what = fmt.Sprintf("user %s's client certificate", user)
	}
	if err := checkKeyMode(p.Key, what+"'s key"); err != nil {
		return nil, err
	}
	cas, err := readCerts(p.CA, "the CA certificate")
	if err != nil {
		return nil, err
	}
	m := &material{user: user, paths: p, cas: cas, pool: x509.NewCertPool()}
	for _, ca := range cas {
		if !ca.IsCA {
			return nil, fmt.Errorf("%s holds a certificate that is not a CA (CN %q, serial %x)", p.CA, ca.Subject.CommonName, ca.SerialNumber)
		}
		if err := checkValidity(ca, p.CA, "the CA certificate", now); err != nil {
			return nil, err
		}
		m.pool.AddCert(ca)
		m.infos = append(m.infos, infoOf(p.CA, KindCA, ca))
	}
	crtPEM, err := os.ReadFile(p.Cert)
	if err != nil {
		return nil, fmt.Errorf("read %s (%s): %w", p.Cert, what, err)
	}
	keyPEM, err := os.ReadFile(p.Key)
	if err != nil {
		return nil, fmt.Errorf("read %s (%s's key): %w", p.Key, what, err)
	}
	m.cert, err = tls.X509KeyPair(crtPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s and %s (%s and its key): %w", p.Cert, p.Key, what, err)
	}
	m.leaf, err = x509.ParseCertificate(m.cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("%s (%s): %w", p.Cert, what, err)
	}
	m.cert.Leaf = m.leaf
	if err := checkValidity(m.leaf, p.Cert, what, now); err != nil {
		return nil, err
	}
	if _, err := m.leaf.Verify(x509.VerifyOptions{Roots: m.pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		var ua x509.UnknownAuthorityError
		if errors.As(err, &ua) {
			return nil, fmt.Errorf("%s (%s, serial %x) is not signed by the CA in %s", p.Cert, what, m.leaf.SerialNumber, p.CA)
		}
		return nil, fmt.Errorf("%s (%s) does not verify against %s: %w", p.Cert, what, p.CA, err)
	}
	if err := checkRole(m.leaf, p.Cert, user); err != nil {
		return nil, err
	}
	kind := KindClient
	if user == NodeUser {
		kind = KindNode
	}
	m.infos = append(m.infos, infoOf(p.Cert, kind, m.leaf))
	return m, nil
}

// checkRole checks that c is a certificate for user: a node certificate
// (CN "node", server and client authentication) for NodeUser, a client
// certificate with CN user and client authentication otherwise.
func checkRole(c *x509.Certificate, path, user string) error {
	cn := c.Subject.CommonName
	hasEKU := func(u x509.ExtKeyUsage) bool {
		return slices.Contains(c.ExtKeyUsage, u) || slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageAny)
	}
	if user == NodeUser {
		if cn != NodeUser {
			return fmt.Errorf("%s is a certificate for user %q, not a node certificate (CN %q): create one with rangestore cert create-node", path, cn, NodeUser)
		}
		if !hasEKU(x509.ExtKeyUsageServerAuth) || !hasEKU(x509.ExtKeyUsageClientAuth) {
			return fmt.Errorf("%s: a node certificate must allow both server and client authentication (extended key usage)", path)
		}
		return nil
	}
	if cn != user {
		return fmt.Errorf("%s is a certificate for %q, not for user %q", path, cn, user)
	}
	if !hasEKU(x509.ExtKeyUsageClientAuth) {
		return fmt.Errorf("%s: a client certificate must allow client authentication (extended key usage)", path)
	}
	return nil
}
