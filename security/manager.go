package security

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/credentials"

	"github.com/rangestore/rangestore/timeutil"
)

// Config says which identity a Manager loads.
type Config struct {
	// Dir is the certs directory.
	Dir string
	// User is NodeUser for a node (node.crt, node.key), or the client user
	// of a CLI or other client (client.USER.crt, .key; e.g. RootUser).
	User string
	// Time is the clock certificates are checked against, at load and in
	// handshakes; nil is the real clock.
	Time timeutil.TimeSource
}

// Manager holds one identity's certificates (the CA bundle, a certificate
// and its key), checked at load, and makes the TLS configurations and gRPC
// credentials that use them. Reload re-reads the directory and swaps the
// material atomically: connections made afterwards use the new one,
// established connections keep theirs. A failed Reload keeps the old
// material. It is safe for concurrent use.
type Manager struct {
	dir, user string
	ts        timeutil.TimeSource
	reloadMu  sync.Mutex // one Reload at a time
	cur       atomic.Pointer[material]
}

// NewManager loads and checks cfg's identity (see Reload for what is
// checked). An error names the file at fault.
func NewManager(cfg Config) (*Manager, error) {
	if cfg.Dir == "" {
		return nil, errors.New("the certs directory is empty (--certs-dir)")
	}
	if cfg.User == "" {
		return nil, errors.New("the certificate user is empty (node for a node, or a client user such as root)")
	}
	m := &Manager{dir: cfg.Dir, user: cfg.User, ts: cfg.Time}
	if m.ts == nil {
		m.ts = timeutil.DefaultTimeSource{}
	}
	mat, err := m.load()
	if err != nil {
		return nil, err
	}
	m.cur.Store(mat)
	return m, nil
}

func (m *Manager) load() (*material, error) {
	mat, err := loadMaterial(m.dir, m.user, m.ts.Now())
	if err != nil {
		return nil, err
	}
	return mat, nil
}

// Reload re-reads the certs directory: every file present, the key
// readable by its owner only, every certificate valid now, the
// certificate signed by a CA of ca.crt and of the Manager's kind and user.
// On success the new material serves every handshake from now on; on
// failure nothing changes and the error says why and which serial stays
// in use.
func (m *Manager) Reload() error {
	m.reloadMu.Lock()
	defer m.reloadMu.Unlock()
	mat, err := m.load()
	if err != nil {
		old := m.cur.Load()
		return fmt.Errorf("reload certificates from %s: %w (still using %s, serial %x)", m.dir, err, old.paths.Cert, old.leaf.SerialNumber)
	}
	m.cur.Store(mat)
	return nil
}

// User is the identity's user: NodeUser or a client user.
func (m *Manager) User() string { return m.user }

// Paths are the identity's files (for Dragonboat's CAFile, CertFile and
// KeyFile; Dragonboat reads them itself when its transport starts).
func (m *Manager) Paths() Paths { return m.cur.Load().paths }

// Certs describes the certificates in use: each CA of ca.crt, then the
// identity's certificate.
func (m *Manager) Certs() []CertInfo {
	infos := m.cur.Load().infos
	out := make([]CertInfo, len(infos))
	copy(out, infos)
	return out
}

// Expiries is, per kind (KindCA, and KindNode or KindClient), when the
// certificate in use expires; for several CAs, the earliest.
func (m *Manager) Expiries() map[string]time.Time {
	out := map[string]time.Time{}
	for _, c := range m.cur.Load().infos {
		if t, ok := out[c.Kind]; !ok || c.NotAfter.Before(t) {
			out[c.Kind] = c.NotAfter
		}
	}
	return out
}

// ServerTLS returns the TLS configuration of a node's server: TLS 1.3 at
// least, the node certificate, client certificates required and verified
// against the CA. The certificate and CA of each handshake are those in
// use at its start (GetConfigForClient), so a Reload takes effect for new
// connections. Session tickets are off: every connection is verified
// against the current material. Only a node's Manager serves.
func (m *Manager) ServerTLS() (*tls.Config, error) {
	if m.user != NodeUser {
		return nil, fmt.Errorf("the certificate of user %q is a client certificate: only a node (user %q) serves", m.user, NodeUser)
	}
	return &tls.Config{
		MinVersion:             tls.VersionTLS13,
		SessionTicketsDisabled: true,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			mat := m.cur.Load()
			return &tls.Config{
				MinVersion:             tls.VersionTLS13,
				SessionTicketsDisabled: true,
				Certificates:           []tls.Certificate{mat.cert},
				ClientAuth:             tls.RequireAndVerifyClientCert,
				ClientCAs:              mat.pool,
				Time:                   m.ts.Now,
			}, nil
		},
	}, nil
}

// ClientTLS returns a TLS configuration to dial a node with the material
// in use now (call it per dial, or use ClientCredentials, which does): TLS
// 1.3 at least, this identity's certificate, the server verified against
// the CA and the dialled host name, and required to present a node
// certificate. A node's Manager dials its peers with its node
// certificate; a CLI's with its client certificate.
func (m *Manager) ClientTLS() *tls.Config {
	mat := m.cur.Load()
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		Certificates:     []tls.Certificate{mat.cert},
		RootCAs:          mat.pool,
		Time:             m.ts.Now,
		VerifyConnection: verifyServerIsNode,
	}
}

// verifyServerIsNode refuses a server whose (verified) certificate is not
// a node certificate: a client certificate cannot serve as a node.
func verifyServerIsNode(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("the server presented no certificate")
	}
	leaf := cs.PeerCertificates[0]
	if leaf.Subject.CommonName != NodeUser {
		return fmt.Errorf("the server presented a certificate for %q (serial %x), not a node certificate (CN %q)", leaf.Subject.CommonName, leaf.SerialNumber, NodeUser)
	}
	return nil
}

// ServerCredentials are gRPC server credentials over ServerTLS.
func (m *Manager) ServerCredentials() (credentials.TransportCredentials, error) {
	cfg, err := m.ServerTLS()
	if err != nil {
		return nil, err
	}
	return credentials.NewTLS(cfg), nil
}

// ClientCredentials are gRPC client credentials that dial with ClientTLS
// as it is at each handshake, so a Reload takes effect for new
// connections.
func (m *Manager) ClientCredentials() credentials.TransportCredentials {
	return clientCreds{m: m}
}

type clientCreds struct{ m *Manager }

func (c clientCreds) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return credentials.NewTLS(c.m.ClientTLS()).ClientHandshake(ctx, authority, conn)
}

func (c clientCreds) ServerHandshake(net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("security: client credentials cannot serve (use Manager.ServerCredentials)")
}

func (c clientCreds) Info() credentials.ProtocolInfo {
	return credentials.NewTLS(c.m.ClientTLS()).Info()
}

func (c clientCreds) Clone() credentials.TransportCredentials { return clientCreds(c) }

// OverrideServerName is deprecated in grpc and unused: the dialled
// authority names the server.
func (c clientCreds) OverrideServerName(string) error { return nil }

// expiryDesc is the metric of Collector.
var expiryDesc = prometheus.NewDesc("rangestore_cert_expiry_seconds",
	"Unix time (seconds) at which the certificate in use expires, by kind: ca (the earliest CA of ca.crt), node or client.",
	[]string{"kind"}, nil)

// Collector is a Prometheus collector of rangestore_cert_expiry_seconds
// {kind=ca|node|client}: the Unix time at which each certificate in use
// expires (Expiries), read at each scrape, so it follows Reload. Alert on
// rangestore_cert_expiry_seconds - time() < 30*86400.
func (m *Manager) Collector() prometheus.Collector { return expiryCollector{m: m} }

type expiryCollector struct{ m *Manager }

func (e expiryCollector) Describe(ch chan<- *prometheus.Desc) { ch <- expiryDesc }

func (e expiryCollector) Collect(ch chan<- prometheus.Metric) {
	for kind, t := range e.m.Expiries() {
		ch <- prometheus.MustNewConstMetric(expiryDesc, prometheus.GaugeValue, float64(t.Unix()), kind)
	}
}
