package gateway

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rangestore/rangestore/internal/golden"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
)

// TestBuildRoutingTable replays testdata/routing.json through
// BuildRoutingTable and compares with testdata/routing.golden (regenerate
// with -rewrite). Nodes are "nID k=v,k=v [read-replica]" (address
// "hostID:1"); ranges "rID [start,end) voters=.. nonvoters=.. lh=nX" in
// client keys ("sys": a system range), each case a request (Lags: the
// nodes' gossiped closed-timestamp lags, shown as lag=).
func TestBuildRoutingTable(t *testing.T) {
	var data struct {
		Nodes, Ranges []string
		Cases         []struct {
			Name, Start, End, Locality, TTL string
			IncludeWriter                   bool
			Limit                           int32
			Down                            []string
			Lags                            map[string]string // node -> closed-timestamp lag
		}
	}
	golden.LoadJSON(t, "routing.json", &data)
	nodes := map[uint64]*rspb.NodeDescriptor{}
	for _, s := range data.Nodes {
		f := strings.Fields(s)
		id := parseID(t, f[0])
		d := &rspb.NodeDescriptor{NodeId: id, Address: fmt.Sprintf("host%d:1", id), Locality: parseTiers(f[1])}
		d.ReadReplica = len(f) > 2 && f[2] == "read-replica"
		nodes[id] = d
	}
	var descs []*rspb.RangeDescriptor
	lhs := map[uint64]uint64{}
	for _, s := range data.Ranges {
		f := strings.Fields(s)
		d := &rspb.RangeDescriptor{RangeId: parseID(t, f[0])}
		if f[1] == "sys" {
			d.StartKey, d.EndKey = []byte("\x00a"), keys.UserPrefix
			descs = append(descs, d)
			continue
		}
		span := strings.Split(strings.Trim(f[1], "[)"), ",")
		d.StartKey, d.EndKey = keys.UserSpan([]byte(span[0]), []byte(span[1]))
		for _, w := range f[2:] {
			k, v, _ := strings.Cut(w, "=")
			typ := rspb.ReplicaType_VOTER
			switch k {
			case "lh":
				lhs[d.RangeId] = parseID(t, v)
				continue
			case "nonvoters":
				typ = rspb.ReplicaType_NON_VOTER
			}
			for _, n := range strings.Split(v, ",") {
				d.Replicas = append(d.Replicas, &rspb.ReplicaDescriptor{NodeId: parseID(t, n), ReplicaId: uint64(len(d.Replicas) + 1), Type: typ})
			}
		}
		descs = append(descs, d)
	}
	var out strings.Builder
	for _, c := range data.Cases {
		req := &rspb.GetRoutingTableRequest{StartKey: []byte(c.Start), EndKey: []byte(c.End), IncludeWriter: c.IncludeWriter, Limit: c.Limit}
		if c.Locality != "" {
			req.Locality = parseTiers(c.Locality)
		}
		in := RoutingInput{Req: req, Descs: descs, Leaseholders: lhs, Nodes: nodes, Down: map[uint64]string{}}
		for _, d := range c.Down {
			in.Down[parseID(t, d)] = "down"
		}
		for n, l := range c.Lags {
			d, err := time.ParseDuration(l)
			if err != nil {
				t.Fatal(err)
			}
			if in.ClosedLags == nil {
				in.ClosedLags = map[uint64]time.Duration{}
			}
			in.ClosedLags[parseID(t, n)] = d
		}
		if c.TTL != "" {
			d, err := time.ParseDuration(c.TTL)
			if err != nil {
				t.Fatal(err)
			}
			in.TTL = d
		}
		fmt.Fprintf(&out, "== %s\n", c.Name)
		resp, err := BuildRoutingTable(in)
		if err != nil {
			fmt.Fprintf(&out, "error: %v\n", err)
			continue
		}
		fmt.Fprintf(&out, "ttl %ds more=%t\n", resp.TtlSeconds, resp.More)
		for _, e := range resp.Ranges {
			w := "unknown"
			if e.Writer != nil {
				w = server(e.Writer)
			}
			var rs []string
			for _, r := range e.Readers {
				rs = append(rs, server(r))
			}
			fmt.Fprintf(&out, "r%d [%q, %q) writer %s readers %s\n", e.RangeId, e.StartKey, e.EndKey, w, strings.Join(rs, " "))
		}
	}
	golden.Check(t, "routing.golden", []byte(out.String()))
}

func server(s *rspb.RoutingServer) string {
	var tiers []string
	for _, t := range s.Locality {
		tiers = append(tiers, t.Value)
	}
	lag := ""
	if s.ClosedTimestampLagNanos != 0 {
		lag = fmt.Sprintf(",lag=%s", time.Duration(s.ClosedTimestampLagNanos))
	}
	return fmt.Sprintf("n%d(%s,%s,%s%s)", s.NodeId, s.Role, strings.Join(tiers, "/"), s.Address, lag)
}

func parseID(t *testing.T, s string) uint64 {
	t.Helper()
	id, err := strconv.ParseUint(s[1:], 10, 64)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return id
}

func parseTiers(s string) []*rspb.LocalityTier {
	var out []*rspb.LocalityTier
	for _, kv := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(kv, "=")
		out = append(out, &rspb.LocalityTier{Key: k, Value: v})
	}
	return out
}
