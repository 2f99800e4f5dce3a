package ranges

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rangestore/rangestore/internal/golden"
	"github.com/rangestore/rangestore/proto/rspb"
)

// TestReplicaGCDecision replays testdata/replica_gc.json (descriptors
// written as in meta_decision.json; an other local replica that knows a
// Raft leader ends in " leader"; Node and Replica name the local replica
// for the removal rule) through decideReplicaGC and compares
// the result with testdata/replica_gc.golden. Regenerate with -rewrite.
func TestReplicaGCDecision(t *testing.T) {
	var cases struct {
		Cases []struct {
			Name               string
			Desc               string
			Meta, Others       []string
			NotLoaded          bool
			LeaderKnown        bool
			NoLeaderFor, Grace string
			// Node, Replica: this node and the local replica's ID (0: the
			// removal rule is not asked).
			Node, Replica uint64
		}
	}
	golden.LoadJSON(t, "replica_gc.json", &cases)
	descs := func(ss []string) []*rspb.RangeDescriptor {
		var out []*rspb.RangeDescriptor
		for _, s := range ss {
			out = append(out, parseDesc(t, s))
		}
		return out
	}
	dur := func(s string) time.Duration {
		if s == "" {
			return 0
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	var out strings.Builder
	for _, c := range cases.Cases {
		var others []replicaGCOther
		for _, o := range c.Others {
			led := strings.HasSuffix(o, " leader")
			others = append(others, replicaGCOther{Desc: parseDesc(t, strings.TrimSuffix(o, " leader")), LeaderKnown: led})
		}
		f := replicaGCFacts{Desc: parseDesc(t, c.Desc), Meta: descs(c.Meta), Others: others, AllLoaded: !c.NotLoaded,
			LeaderKnown: c.LeaderKnown, NoLeaderFor: dur(c.NoLeaderFor), Grace: dur(c.Grace), NodeID: c.Node, ReplicaID: c.Replica}
		a, reason := decideReplicaGC(f)
		fmt.Fprintf(&out, "== %s\n%s: %s\n", c.Name, a, reason)
	}
	golden.Check(t, "replica_gc.golden", []byte(out.String()))
}
