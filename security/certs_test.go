package security

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// testCA is a certs directory with a CA whose key is outside it.
type testCA struct {
	dir, caKey string
}

func newTestCA(t *testing.T) testCA {
	t.Helper()
	ca := testCA{dir: filepath.Join(t.TempDir(), "certs"), caKey: filepath.Join(t.TempDir(), "ca.key")}
	if _, err := CreateCA(ca.dir, ca.caKey, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return ca
}

func (ca testCA) node(t *testing.T, opts CreateOptions) *x509.Certificate {
	t.Helper()
	c, err := CreateNode(ca.dir, ca.caKey, []string{"127.0.0.1", "localhost"}, opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (ca testCA) client(t *testing.T, user string, opts CreateOptions) *x509.Certificate {
	t.Helper()
	c, err := CreateClient(ca.dir, ca.caKey, user, opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

// TestCreateAndList: the three kinds are created with CockroachDB's file
// names, default lifetimes, SANs, key usages and modes, and List
// describes them; an existing file is not replaced without Overwrite,
// and is with it.
func TestCreateAndList(t *testing.T) {
	start := time.Now()
	ca := newTestCA(t)
	node := ca.node(t, CreateOptions{})
	alice := ca.client(t, "alice", CreateOptions{})
	ca.client(t, "bob", CreateOptions{Admin: true})

	for path, want := range map[string]os.FileMode{
		ca.caKey: 0o600, filepath.Join(ca.dir, NodeKeyFile): 0o600, filepath.Join(ca.dir, "client.alice.key"): 0o600,
		filepath.Join(ca.dir, CAFile): 0o644, filepath.Join(ca.dir, NodeCertFile): 0o644, filepath.Join(ca.dir, "client.alice.crt"): 0o644,
		ca.dir: 0o700,
	} {
		if got := mode(t, path); got != want {
			t.Errorf("%s: mode %04o, want %04o", path, got, want)
		}
	}
	if !slices.Equal(node.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) ||
		!slices.Equal(alice.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
		t.Errorf("key usages: node %v, client %v", node.ExtKeyUsage, alice.ExtKeyUsage)
	}
	if got := node.NotAfter.Sub(start); got < DefaultNodeLifetime-time.Minute || got > DefaultNodeLifetime+time.Minute {
		t.Errorf("node certificate lifetime %s, want %s", got, DefaultNodeLifetime)
	}

	infos, err := List(ca.dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, in := range infos {
		got = append(got, strings.Join([]string{filepath.Base(in.Path), in.Kind, in.User, strings.Join(in.Hosts, ","), map[bool]string{true: "admin"}[in.Admin]}, " "))
		if in.Serial == "" || !in.NotBefore.Before(in.NotAfter) {
			t.Errorf("%+v: no serial or validity", in)
		}
	}
	want := []string{"ca.crt ca rangestore CA  ", "node.crt node node localhost,127.0.0.1 ", "client.alice.crt client alice  ", "client.bob.crt client bob  admin"}
	if !slices.Equal(got, want) {
		t.Errorf("List:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if d := infos[0].NotAfter.Sub(start); d < DefaultCALifetime-time.Minute || d > DefaultCALifetime+time.Minute {
		t.Errorf("CA lifetime %s, want %s", d, DefaultCALifetime)
	}

	// No overwrite without Overwrite: the error names the file and the
	// flag, and the files are unchanged.
	before, _ := os.ReadFile(filepath.Join(ca.dir, NodeCertFile))
	_, err = CreateNode(ca.dir, ca.caKey, []string{"127.0.0.1"}, CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), filepath.Join(ca.dir, NodeCertFile)+" already exists") || !strings.Contains(err.Error(), "--overwrite") {
		t.Fatalf("second create-node: %v", err)
	}
	after, _ := os.ReadFile(filepath.Join(ca.dir, NodeCertFile))
	if string(before) != string(after) {
		t.Fatal("a refused create-node changed node.crt")
	}
	if _, err := CreateCA(ca.dir, ca.caKey, CreateOptions{}); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second create-ca: %v", err)
	}
	node2 := ca.node(t, CreateOptions{Overwrite: true})
	if node2.SerialNumber.Cmp(node.SerialNumber) == 0 {
		t.Fatal("overwrite kept the serial")
	}
	v6, err := CreateNode(ca.dir, ca.caKey, []string{"[::1]", "::2"}, CreateOptions{Overwrite: true})
	if err != nil || len(v6.IPAddresses) != 2 || v6.IPAddresses[0].String() != "::1" || len(v6.DNSNames) != 0 {
		t.Fatalf("IPv6 hosts: %v, %v", v6, err)
	}
	if node3 := ca.node(t, CreateOptions{Overwrite: true, Lifetime: 20 * year}); !node3.NotAfter.Equal(infos[0].NotAfter) {
		t.Fatalf("a node certificate outliving its CA: not after %s, CA's %s", node3.NotAfter, infos[0].NotAfter)
	}
}

// TestCreateRefusesBadInput: hosts, users and lifetimes that cannot make a
// certificate are refused with the reason, before anything is written.
func TestCreateRefusesBadInput(t *testing.T) {
	ca := newTestCA(t)
	for _, tc := range []struct {
		name  string
		err   func() error
		want  string
		files []string
	}{
		{"no hosts", func() error { _, err := CreateNode(ca.dir, ca.caKey, nil, CreateOptions{}); return err }, "at least one host", nil},
		{"host with port", func() error {
			_, err := CreateNode(ca.dir, ca.caKey, []string{"db1:26257"}, CreateOptions{})
			return err
		}, `host "db1:26257" has a port`, []string{NodeCertFile}},
		{"user node", func() error { _, err := CreateClient(ca.dir, ca.caKey, "node", CreateOptions{}); return err }, "reserved for node certificates", nil},
		{"user with a slash", func() error { _, err := CreateClient(ca.dir, ca.caKey, "a/b", CreateOptions{}); return err }, "only letters", nil},
		{"empty user", func() error { _, err := CreateClient(ca.dir, ca.caKey, "", CreateOptions{}); return err }, "empty", nil},
		{"CA key readable by others", func() error {
			must(t, os.Chmod(ca.caKey, 0o644))
			_, err := CreateClient(ca.dir, ca.caKey, "carol", CreateOptions{})
			must(t, os.Chmod(ca.caKey, 0o600))
			return err
		}, "mode 0644", []string{"client.carol.crt"}},
		{"no CA key", func() error { _, err := CreateClient(ca.dir, "", "carol", CreateOptions{}); return err }, "--ca-key", []string{"client.carol.crt"}},
		{"wrong CA key", func() error {
			other := filepath.Join(t.TempDir(), "other.key")
			if _, err := CreateCA(t.TempDir(), other, CreateOptions{}); err != nil {
				return err
			}
			_, err := CreateClient(ca.dir, other, "carol", CreateOptions{})
			return err
		}, "does not belong to any certificate", []string{"client.carol.crt"}},
	} {
		err := tc.err()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
		for _, f := range tc.files {
			if _, err := os.Stat(filepath.Join(ca.dir, f)); err == nil {
				t.Errorf("%s: %s was written", tc.name, f)
			}
		}
	}
}

func TestParseLifetime(t *testing.T) {
	for in, want := range map[string]time.Duration{"8760h": 8760 * time.Hour, "30d": 30 * 24 * time.Hour, "5y": 5 * year, "90m": 90 * time.Minute} {
		if got, err := ParseLifetime(in); err != nil || got != want {
			t.Errorf("ParseLifetime(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1h", "0d", "xd", "5", "1.5y", "99999999999y"} {
		if _, err := ParseLifetime(in); err == nil || !strings.Contains(err.Error(), "lifetime") {
			t.Errorf("ParseLifetime(%q): %v, want an error", in, err)
		}
	}
}
