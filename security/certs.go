package security

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// File names in a certs directory (CockroachDB's layout).
const (
	CAFile       = "ca.crt"
	NodeCertFile = "node.crt"
	NodeKeyFile  = "node.key"
)

// NodeUser is the user of a node certificate (its CN), RootUser the client
// user that is always an admin.
const (
	NodeUser = "node"
	RootUser = "root"
)

// AdminOU is the organizational unit that `cert create-client --admin`
// puts in a client certificate's subject: its user may call Admin and
// Backup like root.
const AdminOU = "admin"

// Default lifetimes (CockroachDB's): CA 10 years, node and client 5.
const (
	year                  = 365 * 24 * time.Hour
	DefaultCALifetime     = 10 * year
	DefaultNodeLifetime   = 5 * year
	DefaultClientLifetime = 5 * year
)

// backdate is how long before its creation a certificate becomes valid, so
// that a node whose clock is somewhat behind the issuer's accepts it.
const backdate = time.Hour

// ClientCertFile and ClientKeyFile name the files of user's client
// certificate.
func ClientCertFile(user string) string { return "client." + user + ".crt" }

// ClientKeyFile: see ClientCertFile.
func ClientKeyFile(user string) string { return "client." + user + ".key" }

// DefaultCertsDir is the certs directory used when none is given:
// ~/.rangestore-certs, or "certs" if there is no home directory.
func DefaultCertsDir() string {
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		return "certs"
	}
	return filepath.Join(home, ".rangestore-certs")
}

// CreateOptions are the options of CreateCA, CreateNode and CreateClient.
type CreateOptions struct {
	// Lifetime of the certificate; 0 is the kind's default. A node or
	// client certificate never outlives the CA that signs it: its expiry
	// is capped at the CA's.
	Lifetime time.Duration
	// Overwrite replaces existing files; without it, a create that would
	// replace one changes nothing and says which file exists.
	Overwrite bool
	// Admin marks a client certificate as an admin's (CreateClient only).
	Admin bool

	// now is the creation time (tests: certificates valid in the past or
	// the future); zero is the real time.
	now time.Time
}

func (o CreateOptions) validity(def time.Duration) (notBefore, notAfter time.Time, err error) {
	life := o.Lifetime
	if life == 0 {
		life = def
	}
	if life < 0 {
		return time.Time{}, time.Time{}, fmt.Errorf("lifetime %s is negative", life)
	}
	now := o.now
	if now.IsZero() {
		now = time.Now()
	}
	now = now.UTC().Truncate(time.Second)
	return now.Add(-backdate), now.Add(life), nil
}

// ParseLifetime parses a --lifetime value: a Go duration (8760h, 90m) or
// a whole number of days or years (30d, 5y; a year is 365 days).
func ParseLifetime(s string) (time.Duration, error) {
	var unit time.Duration
	switch {
	case strings.HasSuffix(s, "d"):
		unit = 24 * time.Hour
	case strings.HasSuffix(s, "y"):
		unit = year
	default:
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("lifetime %q: want a duration like 8760h, 30d or 5y", s)
		}
		if d <= 0 {
			return 0, fmt.Errorf("lifetime %q: must be positive", s)
		}
		return d, nil
	}
	n, err := strconv.Atoi(s[:len(s)-1])
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("lifetime %q: want a positive whole number of days (30d) or years (5y), or a duration like 8760h", s)
	}
	if time.Duration(n) > math.MaxInt64/unit {
		return 0, fmt.Errorf("lifetime %q is too long", s)
	}
	return time.Duration(n) * unit, nil
}

// CreateCA creates a CA: its certificate in dir/ca.crt (created 0700 if
// missing) and its key at caKeyPath (0600; it may be outside dir, and
// should be: nodes do not need it).
func CreateCA(dir, caKeyPath string, opts CreateOptions) (*x509.Certificate, error) {
	if caKeyPath == "" {
		return nil, errors.New("the CA key path is empty (--ca-key)")
	}
	crtPath := filepath.Join(dir, CAFile)
	if err := refuseExisting(opts.Overwrite, crtPath, caKeyPath); err != nil {
		return nil, err
	}
	notBefore, notAfter, err := opts.validity(DefaultCALifetime)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "rangestore CA", Organization: []string{"rangestore"}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	if err := writeKeyPair(dir, crtPath, caKeyPath, der, key); err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// CreateNode creates dir/node.crt and dir/node.key, signed by the CA
// (dir/ca.crt and the key at caKeyPath): CN "node", the hosts (IP
// addresses and DNS names, without ports) as subject alternative names,
// usable as a server and as a client (node-to-node traffic).
func CreateNode(dir, caKeyPath string, hosts []string, opts CreateOptions) (*x509.Certificate, error) {
	if len(hosts) == 0 {
		return nil, errors.New("a node certificate needs at least one host (the IP addresses and DNS names the node is reached at)")
	}
	var ips []net.IP
	var names []string
	for i, h := range hosts {
		switch {
		case h == "":
			return nil, fmt.Errorf("host %d is empty", i+1)
		case strings.ContainsAny(h, " /"):
			return nil, fmt.Errorf("host %q: want an IP address or a DNS name", h)
		}
		if ip := net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")); ip != nil {
			ips = append(ips, ip)
			continue
		}
		if _, port, err := net.SplitHostPort(h); err == nil {
			return nil, fmt.Errorf("host %q has a port (%s): give the host only; the certificate covers every port", h, port)
		}
		names = append(names, h)
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: NodeUser, Organization: []string{"rangestore"}},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: ips,
		DNSNames:    names,
	}
	return createSigned(dir, caKeyPath, NodeCertFile, NodeKeyFile, tmpl, DefaultNodeLifetime, opts)
}

// CreateClient creates dir/client.USER.crt and .key, signed by the CA:
// CN = user, client authentication only; with opts.Admin, the subject's
// OU is "admin".
func CreateClient(dir, caKeyPath, user string, opts CreateOptions) (*x509.Certificate, error) {
	if err := checkUser(user); err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: user, Organization: []string{"rangestore"}},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if opts.Admin {
		tmpl.Subject.OrganizationalUnit = []string{AdminOU}
	}
	return createSigned(dir, caKeyPath, ClientCertFile(user), ClientKeyFile(user), tmpl, DefaultClientLifetime, opts)
}

// checkUser validates a client user name: it names files and is a
// certificate's CN.
func checkUser(user string) error {
	switch {
	case user == "":
		return errors.New("the user name is empty")
	case user == NodeUser:
		return fmt.Errorf("user %q is reserved for node certificates (create-node)", NodeUser)
	case len(user) > 63:
		return fmt.Errorf("user %q is longer than 63 characters", user)
	}
	for _, r := range user {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return fmt.Errorf("user %q: only letters, digits, '_', '-' and '.' are allowed", user)
		}
	}
	return nil
}

// createSigned signs tmpl with the CA of dir and caKeyPath and writes the
// certificate and a new key as dir/crtName and dir/keyName.
func createSigned(dir, caKeyPath, crtName, keyName string, tmpl *x509.Certificate, def time.Duration, opts CreateOptions) (*x509.Certificate, error) {
	if caKeyPath == "" {
		return nil, errors.New("the CA key path is empty (--ca-key)")
	}
	crtPath, keyPath := filepath.Join(dir, crtName), filepath.Join(dir, keyName)
	if err := refuseExisting(opts.Overwrite, crtPath, keyPath); err != nil {
		return nil, err
	}
	ca, caKey, err := loadCA(dir, caKeyPath)
	if err != nil {
		return nil, err
	}
	notBefore, notAfter, err := opts.validity(def)
	if err != nil {
		return nil, err
	}
	if notBefore.Add(backdate).After(ca.NotAfter) {
		return nil, fmt.Errorf("the CA in %s expired on %s: create a new CA first", filepath.Join(dir, CAFile), fmtTime(ca.NotAfter))
	}
	tmpl.NotBefore = notBefore
	tmpl.NotAfter = notAfter
	if tmpl.NotAfter.After(ca.NotAfter) {
		tmpl.NotAfter = ca.NotAfter
	}
	tmpl.SerialNumber, err = newSerial()
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", crtPath, err)
	}
	if err := writeKeyPair(dir, crtPath, keyPath, der, key); err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// loadCA reads the CA key at caKeyPath and, from dir/ca.crt, the CA
// certificate of that key.
func loadCA(dir, caKeyPath string) (*x509.Certificate, crypto.Signer, error) {
	caPath := filepath.Join(dir, CAFile)
	cas, err := readCerts(caPath, "the CA certificate")
	if err != nil {
		return nil, nil, err
	}
	if err := checkKeyMode(caKeyPath, "the CA key"); err != nil {
		return nil, nil, err
	}
	keyPEM, err := os.ReadFile(caKeyPath)
	if err != nil {
		return nil, nil, fmt.Errorf("read the CA key %s: %w", caKeyPath, err)
	}
	signer, err := parseKey(keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("the CA key %s: %w", caKeyPath, err)
	}
	for _, c := range cas {
		if pub, ok := c.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); ok && pub.Equal(signer.Public()) {
			if !c.IsCA {
				return nil, nil, fmt.Errorf("%s: the certificate of the key %s is not a CA certificate", caPath, caKeyPath)
			}
			return c, signer, nil
		}
	}
	return nil, nil, fmt.Errorf("the CA key %s does not belong to any certificate in %s", caKeyPath, caPath)
}

func parseKey(keyPEM []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	var k any
	var err error
	switch block.Type {
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	}
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported key type %T", k)
	}
	return s, nil
}

// refuseExisting fails, naming the first file that exists, unless
// overwrite is set.
func refuseExisting(overwrite bool, paths ...string) error {
	if overwrite {
		return nil
	}
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%s already exists (use --overwrite to replace it)", p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

func newSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// writeKeyPair writes the certificate (0644) and the key (0600), each to a
// temporary file renamed into place, the key first: a failure leaves no
// certificate without its key.
func writeKeyPair(dir, crtPath, keyPath string, der []byte, key *ecdsa.PrivateKey) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("certs directory: %w", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if dir := filepath.Dir(keyPath); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("key directory: %w", err)
		}
	}
	if err := writeFileAtomic(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), 0o600); err != nil {
		return err
	}
	return writeFileAtomic(crtPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	return nil
}

func fmtTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 MST") }
