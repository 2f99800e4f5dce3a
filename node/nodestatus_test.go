package node

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rangestore/rangestore/proto/rspb"
)

// rewriting reports whether golden files under testdata/ are regenerated
// instead of compared against: go test ./node/ -run TestDecideNodeState
// -rewrite (the flag is defined here unless a test library already did).
func rewriting() bool {
	f := flag.Lookup("rewrite")
	return f != nil && f.Value.String() == "true"
}

func init() {
	if flag.Lookup("rewrite") == nil {
		flag.Bool("rewrite", false, "rewrite the golden files under testdata/")
	}
}

// checkGolden compares got with testdata/name (or writes it with -rewrite).
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if rewriting() {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -rewrite to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs from the output (rerun with -rewrite if the change is intended):\n got:\n%s\nwant:\n%s", path, got, want)
	}
}

// TestDecideNodeState: the liveness rule of `node list` / `node status`
// (testdata/node_state.json -> node_state.golden).
func TestDecideNodeState(t *testing.T) {
	var cases struct {
		Cases []struct {
			Name, ExpiresIn, DeadAfter string
			NoRecord, Draining         bool
			Epoch                      int64
		}
	}
	data, err := os.ReadFile(filepath.Join("testdata", "node_state.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &cases); err != nil {
		t.Fatal(err)
	}
	const now = int64(1_700_000_000_000_000_000)
	var out bytes.Buffer
	for _, c := range cases.Cases {
		deadAfter, err := time.ParseDuration(c.DeadAfter)
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		var rec *rspb.Liveness
		if !c.NoRecord {
			in, err := time.ParseDuration(c.ExpiresIn)
			if err != nil {
				t.Fatalf("%s: %v", c.Name, err)
			}
			rec = &rspb.Liveness{NodeId: 4, Epoch: c.Epoch, Draining: c.Draining, Expiration: &rspb.Timestamp{WallTime: now + int64(in)}}
		}
		st := decideNodeState(rec, now, deadAfter)
		fmt.Fprintf(&out, "== %s\n%s %s: %s\n", c.Name, LivenessName(st.Liveness), MembershipName(st.Membership), st.Reason)
	}
	checkGolden(t, "node_state.golden", out.Bytes())
}
