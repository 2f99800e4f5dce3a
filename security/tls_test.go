package security

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// startTLSServer accepts TLS connections on loopback with cfg and answers
// each with one line, "CN SERIAL" of the client's verified certificate,
// then closes it. It stops, and its goroutines end, with the test.
func startTLSServer(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	lis, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
					return
				}
				tc := c.(*tls.Conn)
				if err := tc.Handshake(); err != nil {
					return
				}
				leaf := tc.ConnectionState().PeerCertificates[0]
				fmt.Fprintf(tc, "%s %x\n", leaf.Subject.CommonName, leaf.SerialNumber)
			}()
		}
	}()
	t.Cleanup(func() {
		lis.Close()
		wg.Wait()
	})
	return lis.Addr().String()
}

// exchange dials addr with cfg and reads the server's line; it returns
// that line and the server certificate's serial, or the handshake's or
// the read's error (in TLS 1.3 the server's verdict on the client's
// certificate arrives after the client's handshake).
func exchange(addr string, cfg *tls.Config) (line string, serverSerial *big.Int, err error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return "", nil, err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return "", nil, err
	}
	if v := conn.ConnectionState().Version; v != tls.VersionTLS13 {
		return "", nil, fmt.Errorf("negotiated TLS version %x, want 1.3", v)
	}
	line, err = bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return "", nil, err
	}
	return strings.TrimSpace(line), conn.ConnectionState().PeerCertificates[0].SerialNumber, nil
}

func mustManager(t *testing.T, dir, user string) *Manager {
	t.Helper()
	m, err := NewManager(Config{Dir: dir, User: user})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func serverTLS(t *testing.T, m *Manager) *tls.Config {
	t.Helper()
	cfg, err := m.ServerTLS()
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestHandshake: a node serves TLS 1.3 to its peers (node certificate)
// and to clients (client certificate), and each side sees the other's
// verified identity; a client without a certificate, with a certificate of
// a second CA, with an expired certificate or offering TLS 1.2 only is
// refused, and a client refuses a server of a second CA or one that is not
// a node.
func TestHandshake(t *testing.T) {
	ca := newTestCA(t)
	node := ca.node(t, CreateOptions{})
	alice := ca.client(t, "alice", CreateOptions{})
	nodeM, aliceM := mustManager(t, ca.dir, NodeUser), mustManager(t, ca.dir, "alice")
	if _, err := aliceM.ServerTLS(); err == nil || !strings.Contains(err.Error(), "only a node") {
		t.Fatalf("a client's ServerTLS: %v", err)
	}
	addr := startTLSServer(t, serverTLS(t, nodeM))

	for _, tc := range []struct {
		m    *Manager
		want string
	}{{nodeM, fmt.Sprintf("node %x", node.SerialNumber)}, {aliceM, fmt.Sprintf("alice %x", alice.SerialNumber)}} {
		line, serial, err := exchange(addr, tc.m.ClientTLS())
		if err != nil || line != tc.want || serial.Cmp(node.SerialNumber) != 0 {
			t.Fatalf("%s dials the node: %q, server serial %x, %v; want %q, %x", tc.m.User(), line, serial, err, tc.want, node.SerialNumber)
		}
	}

	refused := func(name string, cfg *tls.Config, addr string, want string) {
		t.Helper()
		line, _, err := exchange(addr, cfg)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %q, %v; want an error with %q", name, line, err, want)
		}
	}
	ourCAs := aliceM.ClientTLS().RootCAs

	noCert := aliceM.ClientTLS()
	noCert.Certificates = nil
	refused("no client certificate", noCert, addr, "certificate required")

	other := newTestCA(t)
	other.node(t, CreateOptions{})
	other.client(t, "alice", CreateOptions{})
	foreign := mustManager(t, other.dir, "alice").ClientTLS()
	foreign.RootCAs = ourCAs // it trusts our server; our server must not trust it
	refused("client certificate of a second CA", foreign, addr, "unknown certificate authority")

	// An expired client certificate (which a Manager would not load:
	// presented by hand).
	ca.client(t, "eve", CreateOptions{Lifetime: time.Hour, now: time.Now().Add(-3 * time.Hour)})
	eve, err := tls.LoadX509KeyPair(filepath.Join(ca.dir, "client.eve.crt"), filepath.Join(ca.dir, "client.eve.key"))
	if err != nil {
		t.Fatal(err)
	}
	expired := aliceM.ClientTLS()
	expired.Certificates = []tls.Certificate{eve}
	refused("expired client certificate", expired, addr, "expired certificate")

	tls12 := aliceM.ClientTLS()
	tls12.MinVersion, tls12.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	refused("TLS 1.2 client", tls12, addr, "protocol version")

	// The client's checks of the server: a node of a second CA, and a
	// server whose certificate is not a node's (a client certificate, and
	// one that allows server use but has another CN).
	refused("server of a second CA", aliceM.ClientTLS(), startTLSServer(t, serverTLS(t, mustManager(t, other.dir, NodeUser))), "certificate signed by unknown authority")
	serve := func(name string, eku ...x509.ExtKeyUsage) string {
		t.Helper()
		if _, err := createSigned(ca.dir, ca.caKey, name+".crt", name+".key", &x509.Certificate{
			Subject:     pkix.Name{CommonName: name},
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: eku,
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		}, time.Hour, CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		cert, err := tls.LoadX509KeyPair(filepath.Join(ca.dir, name+".crt"), filepath.Join(ca.dir, name+".key"))
		if err != nil {
			t.Fatal(err)
		}
		return startTLSServer(t, &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ourCAs})
	}
	// (CreateClient makes no SANs; this one has the host's.)
	refused("client certificate as a server", nodeM.ClientTLS(), serve("carol", x509.ExtKeyUsageClientAuth), "incompatible key usage")
	refused("server certificate that is not a node's", nodeM.ClientTLS(), serve("mallory", x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth), `certificate for "mallory"`)
}

// TestReload: a Reload makes new handshakes use the new certificate (the
// server's and the client's), not before; a Reload of bad material fails,
// says which serial stays, and changes nothing.
func TestReload(t *testing.T) {
	ca := newTestCA(t)
	n1 := ca.node(t, CreateOptions{})
	a1 := ca.client(t, "alice", CreateOptions{})
	nodeM, aliceM := mustManager(t, ca.dir, NodeUser), mustManager(t, ca.dir, "alice")
	addr := startTLSServer(t, serverTLS(t, nodeM))
	check := func(when string, server, client *big.Int) {
		t.Helper()
		line, serial, err := exchange(addr, aliceM.ClientTLS())
		if err != nil || serial.Cmp(server) != 0 || line != fmt.Sprintf("alice %x", client) {
			t.Fatalf("%s: server serial %x, client line %q, %v; want server %x, client %x", when, serial, line, err, server, client)
		}
	}
	check("before", n1.SerialNumber, a1.SerialNumber)

	n2 := ca.node(t, CreateOptions{Overwrite: true, Lifetime: 24 * time.Hour})
	a2 := ca.client(t, "alice", CreateOptions{Overwrite: true})
	check("new files, no reload", n1.SerialNumber, a1.SerialNumber)
	if err := nodeM.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := aliceM.Reload(); err != nil {
		t.Fatal(err)
	}
	check("after reload", n2.SerialNumber, a2.SerialNumber)
	if got := nodeM.Certs()[1].Serial; got != fmt.Sprintf("%x", n2.SerialNumber) {
		t.Fatalf("Certs serial %s, want %x", got, n2.SerialNumber)
	}
	if got := nodeM.Expiries()[KindNode]; !got.Equal(n2.NotAfter) {
		t.Fatalf("node expiry %s, want %s", got, n2.NotAfter)
	}

	// A bad reload: a new certificate whose key others can read.
	ca.node(t, CreateOptions{Overwrite: true})
	keyPath := filepath.Join(ca.dir, NodeKeyFile)
	if err := os.Chmod(keyPath, 0o644); err != nil {
		t.Fatal(err)
	}
	err := nodeM.Reload()
	if err == nil || !strings.Contains(err.Error(), "chmod 0600 "+keyPath) || !strings.Contains(err.Error(), fmt.Sprintf("still using %s, serial %x", filepath.Join(ca.dir, NodeCertFile), n2.SerialNumber)) {
		t.Fatalf("bad reload: %v", err)
	}
	check("after a bad reload", n2.SerialNumber, a2.SerialNumber)
}

// TestExpiryCollector: rangestore_cert_expiry_seconds{kind} is the Unix
// time each certificate in use expires, and follows a reload.
func TestExpiryCollector(t *testing.T) {
	ca := newTestCA(t)
	ca.node(t, CreateOptions{})
	m := mustManager(t, ca.dir, NodeUser)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m.Collector())
	gather := func() map[string]float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, mf := range mfs {
			if mf.GetName() != "rangestore_cert_expiry_seconds" {
				continue
			}
			for _, mt := range mf.Metric {
				out[mt.Label[0].GetValue()] = mt.GetGauge().GetValue()
			}
		}
		return out
	}
	infos := m.Certs()
	if got, want := gather(), map[string]float64{KindCA: float64(infos[0].NotAfter.Unix()), KindNode: float64(infos[1].NotAfter.Unix())}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("gathered %v, want %v", got, want)
	}
	n2 := ca.node(t, CreateOptions{Overwrite: true, Lifetime: 48 * time.Hour})
	if err := m.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := gather()[KindNode]; got != float64(n2.NotAfter.Unix()) {
		t.Fatalf("after reload: %v, want %d", got, n2.NotAfter.Unix())
	}
}
