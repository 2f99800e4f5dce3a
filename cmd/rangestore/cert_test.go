package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rangestore/rangestore/security"
)

// runCaptured runs the command line in-process and returns its exit code,
// stdout and stderr.
func runCaptured(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	savedOut, savedErr := stdout, stderr
	stdout, stderr = &out, &errOut
	defer func() { stdout, stderr = savedOut, savedErr }()
	code := run(args)
	return code, out.String(), errOut.String()
}

// TestCertCommand: cert create-ca, create-node, create-client (plain and
// --admin) and list, in-process: the files load as a node's and a
// client's identity, list shows all four certificates, and bad command
// lines are refused with the reason (an existing file without
// --overwrite, a missing --ca-key, a bad --lifetime, no hosts).
func TestCertCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	caKey := filepath.Join(t.TempDir(), "ca.key")
	for _, args := range [][]string{
		{"cert", "create-ca", "--certs-dir", dir, "--ca-key", caKey},
		{"cert", "create-node", "127.0.0.1", "localhost,db1.example", "--certs-dir", dir, "--ca-key", caKey, "--lifetime", "30d"},
		{"cert", "create-client", "alice", "--certs-dir", dir, "--ca-key", caKey},
		{"cert", "create-client", "ops", "--admin", "--certs-dir", dir, "--ca-key", caKey},
	} {
		code, out, errOut := runCaptured(t, args...)
		if code != 0 || !strings.Contains(out, "created ") || !strings.Contains(out, "serial ") {
			t.Fatalf("rangestore %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
	}
	for _, user := range []string{security.NodeUser, "alice", "ops"} {
		if _, err := security.NewManager(security.Config{Dir: dir, User: user}); err != nil {
			t.Fatalf("load %s: %v", user, err)
		}
	}

	code, out, errOut := runCaptured(t, "cert", "list", "--certs-dir", dir)
	if code != 0 {
		t.Fatalf("cert list: exit %d\n%s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := [][]string{
		{"FILE", "KIND", "USER", "SERIAL", "NOT BEFORE", "NOT AFTER", "HOSTS"},
		{"ca.crt", "ca", "rangestore CA"},
		{"node.crt", "node", "node", "localhost,db1.example,127.0.0.1"},
		{"client.alice.crt", "client", "alice"},
		{"client.ops.crt", "client", "ops (admin)"},
	}
	if len(lines) != len(want) {
		t.Fatalf("cert list printed %d lines, want %d:\n%s", len(lines), len(want), out)
	}
	for i, ws := range want {
		for _, w := range ws {
			if !strings.Contains(lines[i], w) {
				t.Errorf("cert list line %d lacks %q:\n%s", i+1, w, out)
			}
		}
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"cert", "create-node", "127.0.0.1", "--certs-dir", dir, "--ca-key", caKey}, 1, "node.crt already exists (use --overwrite to replace it)"},
		{[]string{"cert", "create-client", "bob", "--certs-dir", dir}, 2, "create-client needs --ca-key FILE"},
		{[]string{"cert", "create-client", "bob", "--certs-dir", dir, "--ca-key", caKey, "--lifetime", "5x"}, 2, `--lifetime: lifetime "5x"`},
		{[]string{"cert", "create-node", "--certs-dir", dir, "--ca-key", caKey}, 2, "create-node needs the node's hosts"},
		{[]string{"cert", "create-node", "db1:26257", "--certs-dir", dir, "--ca-key", caKey, "--overwrite"}, 1, `host "db1:26257" has a port`},
		{[]string{"cert", "list", "--admin", "--certs-dir", dir}, 2, "--admin is for create-client only"},
		{[]string{"cert", "rotate", "--certs-dir", dir}, 2, `unknown arguments ["rotate"]`},
	} {
		code, out, errOut := runCaptured(t, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("rangestore %s: exit %d, stderr %q, stdout %q; want exit %d with %q", strings.Join(tc.args, " "), code, errOut, out, tc.code, tc.want)
		}
	}
	// The refused create-node left the node certificate as it was.
	if _, err := security.NewManager(security.Config{Dir: dir, User: security.NodeUser}); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runCaptured(t, "cert", "create-node", "10.0.0.1", "--certs-dir", dir, "--ca-key", caKey, "--overwrite")
	if code != 0 || !strings.Contains(out, "for 10.0.0.1") {
		t.Fatalf("create-node --overwrite: exit %d\n%s", code, out)
	}
}
