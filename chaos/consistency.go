package chaos

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"time"

	"google.golang.org/grpc"

	"github.com/rangestore/rangestore/proto/rspb"
)

// Consistency check: after a history, with the clients stopped and every
// fault undone, each range's replicas are asked for a digest of their
// replicated state and data (Internal RangeBatch, admin_digest). Replicas
// that report the same applied index must report the same digests; a
// difference means one of them diverged: an entry applied differently
// there, or data was lost or written beside the Raft log. Porcupine sees
// such a divergence only if a client happens to read the key from the
// diverged replica while it holds the lease; this check sees it always.

// consistencyReport is the outcome of one check.
type consistencyReport struct {
	Compared int      // ranges whose replicas reached one applied index and were compared
	Skipped  []string // ranges whose replicas did not settle on one applied index in time
	Diverged []string // ranges whose replicas differ at one applied index, with the digests
}

// conner is what the check needs of a target: a connection per node.
type conner interface {
	NumNodes() int
	Conn(i int) *grpc.ClientConn
}

// nodeConner is a target whose client connections may not call Internal
// (a secure ProcCluster's are root's): the check then uses the node
// certificate's.
type nodeConner interface {
	NodeConn(i int) *grpc.ClientConn
}

// internalConn is the connection to node i the check calls Internal on.
func internalConn(tgt conner, i int) *grpc.ClientConn {
	if nc, ok := tgt.(nodeConner); ok {
		return nc.NodeConn(i)
	}
	return tgt.Conn(i)
}

// checkConsistency compares every range's replicas. Replicas that keep
// applying (the system ranges under heartbeats) are polled until they
// agree on an applied index, for at most settle per range.
func checkConsistency(ctx context.Context, tgt conner, settle time.Duration) (consistencyReport, error) {
	var rep consistencyReport
	conns := map[uint64]*grpc.ClientConn{} // node ID -> connection
	descs := map[uint64]*rspb.RangeDescriptor{}
	for i := 0; i < tgt.NumNodes(); i++ {
		c := internalConn(tgt, i)
		if c == nil {
			continue
		}
		// A node restarted by the last recover may still be starting:
		// wait for its connection.
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		info, err := rspb.NewInternalClient(c).NodeInfo(cctx, &rspb.NodeInfoRequest{}, grpc.WaitForReady(true))
		if err == nil {
			var rs *rspb.RangesResponse
			rs, err = rspb.NewAdminClient(c).Ranges(cctx, &rspb.RangesRequest{}, grpc.WaitForReady(true))
			if err == nil {
				for _, ri := range rs.Ranges {
					d := ri.RangeDescriptor
					if d == nil {
						continue
					}
					if o := descs[d.RangeId]; o == nil || o.Generation < d.Generation {
						descs[d.RangeId] = d
					}
				}
			}
		}
		cancel()
		if err != nil {
			return rep, fmt.Errorf("consistency check: node %d: %w", i, err)
		}
		conns[info.Node.GetNodeId()] = c
	}
	ids := make([]uint64, 0, len(descs))
	for id := range descs {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		d := descs[id]
		deadline := time.Now().Add(settle)
		var last []*rspb.ReplicaDigest
		var lastErr error
		settled := false
		for !settled && time.Now().Before(deadline) && ctx.Err() == nil {
			last, lastErr = digests(ctx, conns, d)
			settled = lastErr == nil && sameApplied(last)
			if !settled {
				time.Sleep(50 * time.Millisecond)
			}
		}
		switch {
		case !settled:
			why := fmt.Sprintf("r%d: replicas at different applied indexes %s", id, describeDigests(last))
			if lastErr != nil {
				why = fmt.Sprintf("r%d: %v", id, lastErr)
			}
			rep.Skipped = append(rep.Skipped, why)
		case !sameDigests(last):
			// Confirm once at a later index: a digest taken while a
			// snapshot was being installed could be torn.
			again, err := digests(ctx, conns, d)
			if err == nil && sameApplied(again) && sameDigests(again) {
				rep.Compared++
				continue
			}
			rep.Diverged = append(rep.Diverged, fmt.Sprintf("r%d [%q, %q) gen %d: %s", id, d.StartKey, d.EndKey, d.Generation, describeDigests(last)))
		default:
			rep.Compared++
		}
	}
	return rep, nil
}

// digests asks every replica of d for its digest.
func digests(ctx context.Context, conns map[uint64]*grpc.ClientConn, d *rspb.RangeDescriptor) ([]*rspb.ReplicaDigest, error) {
	var out []*rspb.ReplicaDigest
	for _, r := range d.Replicas {
		c := conns[r.NodeId]
		if c == nil {
			return nil, fmt.Errorf("no connection to n%d", r.NodeId)
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := rspb.NewInternalClient(c).RangeBatch(cctx, &rspb.RangeRequest{RangeId: d.RangeId, Admin: &rspb.RangeRequest_AdminDigest{AdminDigest: true}}, grpc.WaitForReady(true))
		cancel()
		if err != nil {
			return nil, fmt.Errorf("digest of r%d on n%d: %w", d.RangeId, r.NodeId, err)
		}
		if resp.Error != nil {
			return nil, fmt.Errorf("digest of r%d on n%d: %s", d.RangeId, r.NodeId, resp.Error.Message)
		}
		out = append(out, resp.GetReplicaDigest())
	}
	return out, nil
}

func sameApplied(ds []*rspb.ReplicaDigest) bool {
	for _, d := range ds {
		if d.GetAppliedIndex() != ds[0].GetAppliedIndex() {
			return false
		}
	}
	return len(ds) > 0
}

func sameDigests(ds []*rspb.ReplicaDigest) bool {
	for _, d := range ds {
		if !bytes.Equal(d.DataHash, ds[0].DataHash) || !bytes.Equal(d.StateHash, ds[0].StateHash) || d.Generation != ds[0].Generation {
			return false
		}
	}
	return true
}

func describeDigests(ds []*rspb.ReplicaDigest) string {
	var b bytes.Buffer
	for i, d := range ds {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "n%d/replica %d: applied %d gen %d data %x (%d keys) state %x",
			d.GetNodeId(), d.GetReplicaId(), d.GetAppliedIndex(), d.GetGeneration(), prefix4(d.GetDataHash()), d.GetDataKeys(), prefix4(d.GetStateHash()))
	}
	return b.String()
}

func prefix4(b []byte) []byte {
	if len(b) > 4 {
		return b[:4]
	}
	return b
}
