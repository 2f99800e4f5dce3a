package allocator

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"

	"github.com/rangestore/rangestore/proto/rspb"
)

// Golden scripts: every file under testdata/ is a list of directives, each
// with its input lines and the output expected under "----". Rewrite the
// expected output after an intended change with
//
//	go test ./allocator/ -run TestAllocatorScripts -rewrite
//
// and review the diff (the -rewrite flag is datadriven's, as in ranges/).
// Directives:
//
//	decide factor=N [leaseholder=nX]      one node line per node, one range line
//	place                                 same input; prints the placement
//	decommission factor=N leaving=nX,nY   node lines, any number of range lines
//	score [leaseholder=nX] [qps=N]        the scorer (scorer_test.go)
//	zone                                  zone config parsing (scorer_test.go)
//
// A node line is "nID [k=v,k=v] [live|suspect|dead]
// [active|draining|decommissioning|decommissioned] [replicas=N]
// [leases=N] [qps=N] [disk=USED/CAPACITY] [read-replica]" (live and active by default; the k=v list is the locality,
// widest tier first). A range line is "rID n1,n2,n3,n4~": the replicas in
// order, replica ID = position + 1, a "~" suffix marks a non-voter.
func TestAllocatorScripts(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			if d.Cmd == "score" || d.Cmd == "zone" {
				return runScorerDirective(t, d)
			}
			nodes, ranges := parseInput(t, d.Input)
			switch d.Cmd {
			case "decide":
				if len(ranges) != 1 {
					t.Fatalf("%s: decide wants one range line", d.Pos)
				}
				r := Range{Desc: ranges[0], Factor: intArg(t, d, "factor")}
				if d.HasArg("leaseholder") {
					r.Leaseholder = nodeID(t, argVal(t, d, "leaseholder"))
				}
				dec, err := Decide(r, nodes)
				if err != nil {
					return errString(err)
				}
				return formatDecision(dec)
			case "place":
				if len(ranges) != 1 {
					t.Fatalf("%s: place wants one range line", d.Pos)
				}
				p, err := Place(ranges[0], nodes)
				if err != nil {
					return errString(err)
				}
				if p.Node == 0 {
					return "none\n" + p.Reason + "\n"
				}
				return fmt.Sprintf("n%d\n%s\n", p.Node, p.Reason)
			case "decommission":
				factor := intArg(t, d, "factor")
				var leaving []uint64
				for _, s := range strings.Split(argVal(t, d, "leaving"), ",") {
					leaving = append(leaving, nodeID(t, s))
				}
				var out strings.Builder
				ok, reason, err := CanDecommission(nodes, leaving, factor)
				if err != nil {
					return errString(err)
				}
				fmt.Fprintf(&out, "can decommission: %t: %s\n", ok, reason)
				var rs []Range
				for _, desc := range ranges {
					rs = append(rs, Range{Desc: desc, Factor: factor})
				}
				short, err := Unplaceable(nodes, leaving, rs)
				if err != nil {
					return out.String() + errString(err)
				}
				if len(short) == 0 {
					fmt.Fprintf(&out, "every range can be fully replicated\n")
				}
				for _, s := range short {
					fmt.Fprintf(&out, "%s\n", s.Reason)
				}
				return out.String()
			default:
				t.Fatalf("%s: unknown directive %q", d.Pos, d.Cmd)
				return ""
			}
		})
	})
}

func errString(err error) string {
	if !errors.Is(err, ErrInvalid) {
		return "error not marked invalid: " + err.Error() + "\n"
	}
	return "error: " + err.Error() + "\n"
}

func formatDecision(d Decision) string {
	var b strings.Builder
	b.WriteString(d.Action.String())
	if d.Node != 0 {
		fmt.Fprintf(&b, " n%d", d.Node)
	}
	if d.ReplicaID != 0 {
		fmt.Fprintf(&b, " replica=%d", d.ReplicaID)
	}
	fmt.Fprintf(&b, " priority=%d", d.Priority)
	if d.UnderReplicated {
		b.WriteString(" under-replicated")
	}
	fmt.Fprintf(&b, "\n%s\n", d.Reason)
	return b.String()
}

func argVal(t *testing.T, d *datadriven.TestData, key string) string {
	t.Helper()
	a, ok := d.Arg(key)
	if !ok {
		t.Fatalf("%s: missing %s=", d.Pos, key)
	}
	return strings.Join(a.Vals, ",")
}

func intArg(t *testing.T, d *datadriven.TestData, key string) int {
	t.Helper()
	n, err := strconv.Atoi(argVal(t, d, key))
	if err != nil {
		t.Fatalf("%s: %s: %v", d.Pos, key, err)
	}
	return n
}

func nodeID(t *testing.T, s string) uint64 {
	t.Helper()
	id, err := strconv.ParseUint(strings.TrimPrefix(s, "n"), 10, 64)
	if err != nil {
		t.Fatalf("node %q: %v", s, err)
	}
	return id
}

// parseInput reads node lines and range lines (see TestAllocatorScripts).
func parseInput(t *testing.T, input string) ([]Node, []*rspb.RangeDescriptor) {
	t.Helper()
	var nodes []Node
	var ranges []*rspb.RangeDescriptor
	for _, line := range strings.Split(input, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch f[0][0] {
		case 'n':
			nodes = append(nodes, parseNode(t, f))
		case 'r':
			ranges = append(ranges, parseRange(t, f))
		default:
			t.Fatalf("line %q: want a node (nID ...) or a range (rID ...)", line)
		}
	}
	return nodes, ranges
}

func parseNode(t *testing.T, f []string) Node {
	t.Helper()
	n := Node{ID: nodeID(t, f[0])}
	for _, w := range f[1:] {
		switch {
		case w == "live":
			n.Liveness = Live
		case w == "suspect":
			n.Liveness = Suspect
		case w == "dead":
			n.Liveness = Dead
		case w == "active":
			n.Membership = Active
		case w == "draining":
			n.Membership = Draining
		case w == "decommissioning":
			n.Membership = Decommissioning
		case w == "decommissioned":
			n.Membership = Decommissioned
		case w == "read-replica":
			n.ReadReplica = true
		case strings.HasPrefix(w, "replicas="):
			n.Replicas = atoi(t, strings.TrimPrefix(w, "replicas="))
		case strings.HasPrefix(w, "leases="):
			n.Leases = atoi(t, strings.TrimPrefix(w, "leases="))
		case strings.HasPrefix(w, "qps="):
			n.QPS = float64(atoi(t, strings.TrimPrefix(w, "qps=")))
		case strings.HasPrefix(w, "disk="):
			// disk=USED/CAPACITY
			u, c, _ := strings.Cut(strings.TrimPrefix(w, "disk="), "/")
			n.UsedBytes, n.CapacityBytes = int64(atoi(t, u)), int64(atoi(t, c))
		case strings.Contains(w, "="):
			for _, kv := range strings.Split(w, ",") {
				k, v, _ := strings.Cut(kv, "=")
				n.Locality = append(n.Locality, &rspb.LocalityTier{Key: k, Value: v})
			}
		default:
			t.Fatalf("node line %q: unknown word %q", strings.Join(f, " "), w)
		}
	}
	return n
}

func parseRange(t *testing.T, f []string) *rspb.RangeDescriptor {
	t.Helper()
	id, err := strconv.ParseUint(strings.TrimPrefix(f[0], "r"), 10, 64)
	if err != nil || len(f) != 2 {
		t.Fatalf("range line %q: want \"rID n1,n2,n3~\"", strings.Join(f, " "))
	}
	d := &rspb.RangeDescriptor{RangeId: id}
	for i, s := range strings.Split(f[1], ",") {
		typ := rspb.ReplicaType_VOTER
		if strings.HasSuffix(s, "~") {
			typ, s = rspb.ReplicaType_NON_VOTER, strings.TrimSuffix(s, "~")
		}
		d.Replicas = append(d.Replicas, &rspb.ReplicaDescriptor{NodeId: nodeID(t, s), ReplicaId: uint64(i + 1), Type: typ})
	}
	d.NextReplicaId = uint64(len(d.Replicas) + 1)
	return d
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestClassifyLiveness: live before the expiration, suspect for the time
// until store dead after it, dead from then on.
func TestClassifyLiveness(t *testing.T) {
	exp := time.Unix(1000, 0)
	const dead = 10 * time.Second
	for _, c := range []struct {
		now  time.Time
		want Liveness
	}{
		{exp.Add(-time.Second), Live},
		{exp.Add(-time.Nanosecond), Live},
		{exp, Suspect},
		{exp.Add(dead - time.Nanosecond), Suspect},
		{exp.Add(dead), Dead},
		{exp.Add(time.Hour), Dead},
	} {
		if got := ClassifyLiveness(exp, c.now, dead); got != c.want {
			t.Errorf("at expiration%+v: %s, want %s", c.now.Sub(exp), got, c.want)
		}
	}
}

// TestValidateFactor: odd factors from 1 are accepted, others refused
// with ErrInvalid and the factor named.
func TestValidateFactor(t *testing.T) {
	for f := -1; f <= 7; f++ {
		err := ValidateFactor(f)
		if want := f >= 1 && f%2 == 1; (err == nil) != want {
			t.Errorf("factor %d: %v", f, err)
		}
		if err != nil && (!errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), strconv.Itoa(f))) {
			t.Errorf("factor %d: %v does not wrap ErrInvalid or name the factor", f, err)
		}
	}
}
