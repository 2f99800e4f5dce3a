package security

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rangestore/rangestore/timeutil"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, st.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(to, st.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
}

// TestLoadRefusesBadMaterial: each bad certs directory is refused by
// NewManager with an error that names the file and says what is wrong.
func TestLoadRefusesBadMaterial(t *testing.T) {
	for _, tc := range []struct {
		name string
		user string
		// setup breaks a directory with a CA, a node and client alice.
		setup func(t *testing.T, ca testCA)
		want  []string
	}{
		{"missing ca.crt", NodeUser, func(t *testing.T, ca testCA) { must(t, os.Remove(filepath.Join(ca.dir, CAFile))) },
			[]string{"missing ", CAFile, "the CA certificate"}},
		{"missing node.key", NodeUser, func(t *testing.T, ca testCA) { must(t, os.Remove(filepath.Join(ca.dir, NodeKeyFile))) },
			[]string{"missing ", NodeKeyFile, "node certificate's key"}},
		{"missing client cert", "carol", func(t *testing.T, ca testCA) {},
			[]string{"missing ", "client.carol.crt", "create-client carol"}},
		{"key readable by others", NodeUser, func(t *testing.T, ca testCA) { must(t, os.Chmod(filepath.Join(ca.dir, NodeKeyFile), 0o644)) },
			[]string{NodeKeyFile, "mode 0644", "chmod 0600 "}},
		{"key readable by the group", "alice", func(t *testing.T, ca testCA) { must(t, os.Chmod(filepath.Join(ca.dir, "client.alice.key"), 0o640)) },
			[]string{"client.alice.key", "mode 0640", "chmod 0600 "}},
		{"expired node certificate", NodeUser, func(t *testing.T, ca testCA) {
			ca.node(t, CreateOptions{Overwrite: true, Lifetime: time.Hour, now: time.Now().Add(-48 * time.Hour)})
		}, []string{NodeCertFile, "expired on " + time.Now().Add(-47*time.Hour).UTC().Format("2006-01-02 15:04")}},
		{"not yet valid client certificate", "alice", func(t *testing.T, ca testCA) {
			ca.client(t, "alice", CreateOptions{Overwrite: true, now: time.Now().Add(3 * time.Hour)})
		}, []string{"client.alice.crt", "not valid until " + time.Now().Add(2*time.Hour).UTC().Format("2006-01-02 15:04")}},
		{"node certificate of another CA", NodeUser, func(t *testing.T, ca testCA) {
			other := newTestCA(t)
			other.node(t, CreateOptions{})
			copyFile(t, filepath.Join(other.dir, NodeCertFile), filepath.Join(ca.dir, NodeCertFile))
			copyFile(t, filepath.Join(other.dir, NodeKeyFile), filepath.Join(ca.dir, NodeKeyFile))
		}, []string{NodeCertFile, "is not signed by the CA in", CAFile}},
		{"key of another certificate", NodeUser, func(t *testing.T, ca testCA) {
			copyFile(t, filepath.Join(ca.dir, "client.alice.key"), filepath.Join(ca.dir, NodeKeyFile))
		}, []string{NodeCertFile, NodeKeyFile, "private key does not match public key"}},
		{"client certificate used as a node's", NodeUser, func(t *testing.T, ca testCA) {
			copyFile(t, filepath.Join(ca.dir, "client.alice.crt"), filepath.Join(ca.dir, NodeCertFile))
			copyFile(t, filepath.Join(ca.dir, "client.alice.key"), filepath.Join(ca.dir, NodeKeyFile))
		}, []string{NodeCertFile, `certificate for user "alice", not a node certificate`}},
		{"node certificate used as a client's", "alice", func(t *testing.T, ca testCA) {
			copyFile(t, filepath.Join(ca.dir, NodeCertFile), filepath.Join(ca.dir, "client.alice.crt"))
			copyFile(t, filepath.Join(ca.dir, NodeKeyFile), filepath.Join(ca.dir, "client.alice.key"))
		}, []string{"client.alice.crt", `certificate for "node", not for user "alice"`}},
		{"ca.crt without a certificate", NodeUser, func(t *testing.T, ca testCA) {
			must(t, os.WriteFile(filepath.Join(ca.dir, CAFile), []byte("not PEM\n"), 0o644))
		}, []string{CAFile, "holds no PEM certificate"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca := newTestCA(t)
			ca.node(t, CreateOptions{})
			ca.client(t, "alice", CreateOptions{})
			tc.setup(t, ca)
			m, err := NewManager(Config{Dir: ca.dir, User: tc.user})
			if err == nil {
				t.Fatalf("loaded %v", m.Certs())
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// TestKeyModeAndValidityVerdicts: the pure verdicts on a key's mode (no
// group or other bits, a regular file) and on a certificate's validity
// window, at its edges.
func TestKeyModeAndValidityVerdicts(t *testing.T) {
	for m, ok := range map[fs.FileMode]bool{0o600: true, 0o400: true, 0o700: true, 0o640: false, 0o604: false, 0o660: false, 0o644: false, fs.ModeDir | 0o700: false} {
		if err := keyModeError("k", "a key", m); (err == nil) != ok {
			t.Errorf("mode %s: %v", m, err)
		}
	}
	ca := newTestCA(t)
	c := ca.node(t, CreateOptions{Lifetime: time.Hour})
	for _, tc := range []struct {
		at   time.Time
		want string
	}{
		{c.NotBefore.Add(-time.Second), "is not valid until"},
		{c.NotBefore, ""},
		{c.NotAfter, ""},
		{c.NotAfter.Add(time.Second), "expired on " + fmtTime(c.NotAfter)},
	} {
		err := checkValidity(c, "node.crt", "the node certificate", tc.at)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("at %s: %v, want %q", tc.at, err, tc.want)
		}
	}
}

// TestLoadUsesTheGivenClock: validity is checked against the Manager's
// clock: a certificate valid only in the future loads under a clock set
// there.
func TestLoadUsesTheGivenClock(t *testing.T) {
	ca := newTestCA(t)
	at := time.Now().Add(3 * time.Hour)
	ca.node(t, CreateOptions{now: at})
	if _, err := NewManager(Config{Dir: ca.dir, User: NodeUser}); err == nil || !strings.Contains(err.Error(), "not valid until") {
		t.Fatalf("now: %v", err)
	}
	if _, err := NewManager(Config{Dir: ca.dir, User: NodeUser, Time: timeutil.NewManualTimeSource(at)}); err != nil {
		t.Fatalf("at %s: %v", at, err)
	}
}
