package allocator

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"

	"github.com/rangestore/rangestore/proto/rspb"
)

// Scorer and zone config directives of the golden scripts
// (testdata/score*, testdata/zone):
//
//	score [leaseholder=nX] [qps=N]
//	  zone NAME=VALUE ...        optional: the range's zone config, as the
//	                             CLI flags (no spaces inside a value),
//	                             resolved from the default
//	  load LOCALITY:QPS ...      optional: where requests come from
//	  node lines, one range line (as decide)
//	prints the recommendation and its explanation.
//
//	zone
//	  set NAME=VALUE             a field of the config (the rest of the line)
//	  parent NAME=VALUE          a field of the parent (default: the default)
//	  node lines                 optional: checked with Satisfiable
//	prints the parsed config, the resolved one and what is not satisfiable,
//	or the error.
func runScorerDirective(t *testing.T, d *datadriven.TestData) string {
	t.Helper()
	switch d.Cmd {
	case "score":
		return runScore(t, d)
	default:
		return runZone(t, d)
	}
}

func runScore(t *testing.T, d *datadriven.TestData) string {
	t.Helper()
	var rest []string
	flags := map[string]string{}
	var loads []LocalityLoad
	for _, line := range strings.Split(d.Input, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) > 0 && f[0] == "zone":
			for _, kv := range f[1:] {
				k, v, _ := strings.Cut(kv, "=")
				flags[k] = v
			}
		case len(f) > 0 && f[0] == "load":
			for _, lq := range f[1:] {
				loc, q, ok := strings.Cut(lq, ":")
				if !ok {
					t.Fatalf("%s: load %q: want LOCALITY:QPS", d.Pos, lq)
				}
				qps, err := strconv.ParseFloat(q, 64)
				if err != nil {
					t.Fatalf("%s: load %q: %v", d.Pos, lq, err)
				}
				loads = append(loads, LocalityLoad{Locality: parseTiers(loc), QPS: qps})
			}
		default:
			rest = append(rest, line)
		}
	}
	nodes, ranges := parseInput(t, strings.Join(rest, "\n"))
	if len(ranges) != 1 {
		t.Fatalf("%s: score wants one range line", d.Pos)
	}
	z, err := ParseZoneConfig(flags)
	if err != nil {
		return errString(err)
	}
	if z, err = z.Resolve(); err != nil {
		return errString(err)
	}
	in := ScoreInput{Desc: ranges[0], Zone: z, Nodes: nodes, Requests: loads}
	if d.HasArg("leaseholder") {
		in.Leaseholder = nodeID(t, argVal(t, d, "leaseholder"))
	}
	if d.HasArg("qps") {
		in.QPS = float64(intArg(t, d, "qps"))
	}
	rec, err := Score(in)
	if err != nil {
		return errString(err)
	}
	return rec.String()
}

func parseTiers(s string) []*rspb.LocalityTier {
	var out []*rspb.LocalityTier
	for _, kv := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(kv, "=")
		out = append(out, &rspb.LocalityTier{Key: k, Value: v})
	}
	return out
}

func runZone(t *testing.T, d *datadriven.TestData) string {
	t.Helper()
	set, parent := map[string]string{}, map[string]string{}
	var rest []string
	for _, line := range strings.Split(d.Input, "\n") {
		line = strings.TrimSpace(line)
		for prefix, m := range map[string]map[string]string{"set ": set, "parent ": parent} {
			if strings.HasPrefix(line, prefix) {
				k, v, _ := strings.Cut(strings.TrimPrefix(line, prefix), "=")
				m[k] = v
				line = ""
			}
		}
		rest = append(rest, line)
	}
	nodes, _ := parseInput(t, strings.Join(rest, "\n"))
	z, err := ParseZoneConfig(set)
	if err != nil {
		return errString(err)
	}
	root := DefaultZoneConfig()
	if len(parent) > 0 {
		p, err := ParseZoneConfig(parent)
		if err != nil {
			return "parent " + errString(err)
		}
		root = p.InheritFrom(root)
	}
	r := z.InheritFrom(root)
	var b strings.Builder
	fmt.Fprintf(&b, "set: %s\nresolved: %s\n", z, r)
	if err := r.Validate(); err != nil {
		return b.String() + errString(err)
	}
	if len(nodes) > 0 {
		lines := Satisfiable(r, nodes)
		if len(lines) == 0 {
			b.WriteString("satisfiable\n")
		}
		for _, l := range lines {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}
