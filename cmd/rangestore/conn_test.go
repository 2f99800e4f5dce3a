package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/rangestore/rangestore/chaos"
	"github.com/rangestore/rangestore/node"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/security"
	"github.com/rangestore/rangestore/timeutil"
)

// TestCLIStartSecurityMode: start needs exactly one of --certs-dir and
// --insecure; without either the error names both and how to create
// certificates; a certs directory missing a file is refused naming the
// file and the command that makes it. Nothing is created before.
func TestCLIStartSecurityMode(t *testing.T) {
	listen, err := node.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	noNode := filepath.Join(t.TempDir(), "certs")
	caKey := filepath.Join(t.TempDir(), "ca.key")
	if _, err := security.CreateCA(noNode, caKey, security.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		args  []string
		code  int
		wants []string
	}{
		{"neither", nil, 2, []string{"--certs-dir DIR", "--insecure", "rangestore cert create-ca", "create-node", "create-client root"}},
		{"both", []string{"--certs-dir", empty, "--insecure"}, 2, []string{"--certs-dir " + empty + " and --insecure: give one of them"}},
		{"empty dir", []string{"--certs-dir", empty}, 1, []string{filepath.Join(empty, "ca.crt"), "rangestore cert create-ca"}},
		{"no node cert", []string{"--certs-dir", noNode}, 1, []string{filepath.Join(noNode, "node.crt"), "rangestore cert create-node"}},
	}
	for _, c := range cases {
		store := filepath.Join(t.TempDir(), "store")
		r := runBin(t, nil, append([]string{"start", "--store", store, "--listen-addr", listen, "--http-addr", ""}, c.args...)...)
		if r.code != c.code {
			t.Errorf("%s: exit %d, want %d: %s", c.name, r.code, c.code, r)
		}
		for _, w := range c.wants {
			if !strings.Contains(r.errOut, w) {
				t.Errorf("%s: stderr lacks %q: %s", c.name, w, r)
			}
		}
		if _, err := os.Stat(store); err == nil {
			t.Errorf("%s: created %s before refusing", c.name, store)
		}
	}
}

// TestCLIClientSecurityFlags: a client command's certificate problems are
// named before anything is dialled: a missing client certificate names
// its file and `rangestore cert create-client USER`; --insecure with
// --certs-dir or --user is a usage error.
func TestCLIClientSecurityFlags(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	caKey := filepath.Join(t.TempDir(), "ca.key")
	if err := chaos.CreateCerts(dir, caKey); err != nil {
		t.Fatal(err)
	}
	dead, err := node.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args  []string
		code  int
		wants []string
	}{
		{[]string{"kv", "get", "k", "--host", dead, "--certs-dir", dir, "--user", "bob"}, 1,
			[]string{filepath.Join(dir, "client.bob.crt"), "rangestore cert create-client bob"}},
		{[]string{"range", "list", "--host", dead, "--certs-dir", filepath.Join(dir, "nosuch")}, 1,
			[]string{filepath.Join(dir, "nosuch", "ca.crt"), "--insecure"}},
		{[]string{"node", "list", "--host", dead, "--certs-dir", dir, "--insecure"}, 2, []string{"--certs-dir and --insecure: give one of them"}},
		{[]string{"kv", "put", "k", "v", "--host", dead, "--insecure", "--user", "bob"}, 2, []string{"--user bob with --insecure"}},
		{[]string{"workload", "run", "kv", "--hosts", dead, "--certs-dir", dir, "--user", "carol"}, 1, []string{"client.carol.crt", "create-client carol"}},
	}
	for _, c := range cases {
		code, out, errOut := runCaptured(t, c.args...)
		if code != c.code {
			t.Errorf("rangestore %s: exit %d, want %d\n%s%s", strings.Join(c.args, " "), code, c.code, out, errOut)
		}
		for _, w := range c.wants {
			if !strings.Contains(errOut, w) {
				t.Errorf("rangestore %s: stderr lacks %q:\n%s", strings.Join(c.args, " "), w, errOut)
			}
		}
	}
}

// serveGRPC serves health and the generated KV base (which answers
// UNIMPLEMENTED) on loopback with creds until the test ends.
func serveGRPC(t *testing.T, creds credentials.TransportCredentials) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(grpc.Creds(creds))
	healthpb.RegisterHealthServer(s, health.NewServer())
	rspb.RegisterKVServer(s, rspb.UnimplementedKVServer{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(lis)
	}()
	t.Cleanup(func() {
		s.Stop()
		<-done
	})
	return lis.Addr().String()
}

// TestCLISecurityMismatch: a plaintext client at a TLS server, and a TLS
// client at a plaintext server, are told what the other side speaks and
// which flag to use (unary calls and streams), not only that the
// connection closed; matching modes connect (the test servers answer
// UNIMPLEMENTED); probeProtocol finds nothing on a closed port.
func TestCLISecurityMismatch(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	caKey := filepath.Join(t.TempDir(), "ca.key")
	if err := chaos.CreateCerts(dir, caKey); err != nil {
		t.Fatal(err)
	}
	nodeM, err := security.NewManager(security.Config{Dir: dir, User: security.NodeUser})
	if err != nil {
		t.Fatal(err)
	}
	serverCreds, err := nodeM.ServerCredentials()
	if err != nil {
		t.Fatal(err)
	}
	tlsAddr := serveGRPC(t, serverCreds)
	plainAddr := serveGRPC(t, insecure.NewCredentials())
	dead, err := node.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	if p := probeProtocol(tlsAddr, time.Second); p != protoTLS {
		t.Errorf("probe of the TLS server: %s", p)
	}
	if p := probeProtocol(plainAddr, time.Second); p != protoPlaintext {
		t.Errorf("probe of the plaintext server: %s", p)
	}
	if p := probeProtocol(dead, time.Second); p != protoUnknown {
		t.Errorf("probe of a closed port: %s", p)
	}
	cases := []struct {
		args  []string
		wants []string
	}{
		{[]string{"kv", "get", "k", "--host", tlsAddr, "--insecure"}, []string{tlsAddr + " requires TLS", "--certs-dir DIR", "create-client USER"}},
		{[]string{"kv", "scan", "--host", tlsAddr, "--insecure"}, []string{tlsAddr + " requires TLS"}},
		{[]string{"kv", "get", "k", "--host", plainAddr, "--certs-dir", dir}, []string{plainAddr + " serves plaintext", "connect with --insecure"}},
		{[]string{"kv", "scan", "--host", plainAddr, "--certs-dir", dir}, []string{plainAddr + " serves plaintext"}},
		{[]string{"kv", "get", "k", "--host", tlsAddr, "--certs-dir", dir}, []string{"Unimplemented"}},
		{[]string{"kv", "get", "k", "--host", plainAddr, "--insecure"}, []string{"Unimplemented"}},
	}
	for _, c := range cases {
		code, out, errOut := runCaptured(t, c.args...)
		if code != 1 {
			t.Errorf("rangestore %s: exit %d, want 1\n%s%s", strings.Join(c.args, " "), code, out, errOut)
		}
		for _, w := range c.wants {
			if !strings.Contains(errOut, w) {
				t.Errorf("rangestore %s: stderr lacks %q:\n%s", strings.Join(c.args, " "), w, errOut)
			}
		}
	}
}

// TestCLIDemoSecure: demo runs secure with certificates it makes, and the
// CLI lines it prints connect as printed; the same line with --insecure
// instead is refused, told that the node requires TLS.
func TestCLIDemoSecure(t *testing.T) {
	bin, err := chaos.BuildBinary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	logPath := filepath.Join(dir, "demo.out")
	cmd, done := startLogged(t, logPath, bin, "demo", "--nodes", "1", "--duration", "3m", "--store", filepath.Join(dir, "store"))
	var out string
	timeutil.WaitFor(t, 90*time.Second, "the demo's hints", func() error {
		b, err := os.ReadFile(logPath)
		if err != nil {
			return err
		}
		if out = string(b); !strings.Contains(out, "running for") {
			return fmt.Errorf("output so far:\n%s", out)
		}
		return nil
	})
	certs := filepath.Join(dir, "store", "certs")
	if !strings.Contains(out, "certs: "+certs+" (mutual TLS") {
		t.Errorf("the demo does not say where its certificates are:\n%s", out)
	}
	m := regexp.MustCompile(`(?m)^  (\S+ kv put --certs-dir (\S+) --host \S+ hello world)$`).FindStringSubmatch(out)
	if m == nil || m[2] != certs {
		t.Fatalf("no kv put hint with --certs-dir %s:\n%s", certs, out)
	}
	line := strings.Fields(m[1])
	r := runBin(t, nil, line[1:]...)
	if line[0] != bin || r.code != 0 || !strings.HasPrefix(r.out, "OK @") {
		t.Errorf("the printed line %q: %s", m[1], r)
	}
	plain := strings.Replace(m[1], "--certs-dir "+certs, "--insecure", 1)
	r = runBin(t, nil, strings.Fields(plain)[1:]...)
	if r.code != 1 || !strings.Contains(r.errOut, "requires TLS") {
		t.Errorf("%q: %s", plain, r)
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("the demo did not stop on SIGINT")
	}
	if b, _ := os.ReadFile(logPath); !strings.Contains(string(b), "stopping") {
		t.Errorf("the demo did not stop cleanly:\n%s", b)
	}
}

// startLogged starts bin with args, its output going to logPath, and
// returns it with a channel closed once it has exited; the test's cleanup
// kills it and waits for it.
func startLogged(t *testing.T, logPath, bin string, args ...string) (*exec.Cmd, <-chan struct{}) {
	t.Helper()
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); _ = f.Close(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	return cmd, done
}
