// Package golden is the test support for golden files: decisions print
// their outputs for the cases in testdata/*.json, and the output is
// compared with testdata/*.golden, or written there with -rewrite.
//
// The -rewrite flag is cockroachdb/datadriven's (imported here, so it is
// defined exactly once in every test binary, whether or not the package
// under test also runs datadriven scripts).
package golden

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	_ "github.com/cockroachdb/datadriven" // defines -rewrite
)

// Rewriting reports whether golden files are regenerated instead of
// compared against (go test ./pkg/ -run TestX -rewrite).
func Rewriting() bool {
	f := flag.Lookup("rewrite")
	return f != nil && f.Value.String() == "true"
}

// LoadJSON reads the JSON test cases in testdata/name into cases.
func LoadJSON(t testing.TB, name string, cases any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, cases); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// Check compares got with testdata/name (or writes it with -rewrite),
// naming the first line that differs.
func Check(t testing.TB, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if Rewriting() {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -rewrite to create it)", err)
	}
	if bytes.Equal(got, want) {
		return
	}
	gl, wl := bytes.Split(got, []byte("\n")), bytes.Split(want, []byte("\n"))
	for i := 0; i < len(gl) || i < len(wl); i++ {
		var g, w []byte
		if i < len(gl) {
			g = gl[i]
		}
		if i < len(wl) {
			w = wl[i]
		}
		if !bytes.Equal(g, w) {
			t.Fatalf("%s differs from the output at line %d (rerun with -rewrite if the change is intended):\n got: %s\nwant: %s", path, i+1, g, w)
		}
	}
}
