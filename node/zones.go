package node

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/allocator"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/rebalance"
)

// Zone configs (issue 12 item 2): records in the system range
// (keys.ZoneKey), one per span of client keys plus the default zone's.
// Spans may nest but not partly overlap; a range is under the innermost
// span holding its start key, whose fields are inherited from the spans
// around it, then from the default zone's record, then from the built-in
// default with the replication factor setting as its replica count (the
// default zone's replica counts are that setting: `cluster set-replicas`).
// SetZone splits the ranges at a span's bounds first (sticky splits, which
// the merge queue never undoes), so every range lies in one zone; the
// replicate queues read the records every pass and decide with the
// range's resolved config.

// zoneSpan is one stored record, parsed.
type zoneSpan struct {
	rec *rspb.ZoneConfigRecord
	cfg allocator.ZoneConfig // the fields it sets (partial)
}

func (z zoneSpan) isDefault() bool { return len(z.rec.StartKey) == 0 && len(z.rec.EndKey) == 0 }

// contains reports whether client key k is in the span.
func (z zoneSpan) contains(k []byte) bool {
	return bytes.Compare(z.rec.StartKey, k) <= 0 && (len(z.rec.EndKey) == 0 || bytes.Compare(k, z.rec.EndKey) < 0)
}

// readZones scans the zone config records (by start key, the default
// zone first).
func (n *Node) readZones(ctx context.Context) ([]zoneSpan, error) {
	end := append([]byte(nil), keys.ZonePrefix...)
	end[len(end)-1]++
	resps, err := n.router.Send(ctx, []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Scan{Scan: &rspb.ScanRequest{StartKey: keys.ZonePrefix, EndKey: end}}}})
	if err != nil {
		return nil, err
	}
	var out []zoneSpan
	for _, kv := range resps[0].GetScan().GetKvs() {
		rec := &rspb.ZoneConfigRecord{}
		if err := proto.Unmarshal(kv.Value, rec); err != nil {
			return nil, fmt.Errorf("zone record %s: %w", keys.Pretty(kv.Key), err)
		}
		cfg, err := allocator.ParseZoneConfig(rec.Fields)
		if err != nil {
			return nil, fmt.Errorf("zone record %s: %w", keys.Pretty(kv.Key), err)
		}
		out = append(out, zoneSpan{rec: rec, cfg: cfg})
	}
	return out, nil
}

// resolveZone is the config of the range starting at client key start
// (nil: the first range of the user span), with replica count factor by
// default: the spans holding start, innermost first, then the default
// zone's record, then the built-in default. It also names the span.
func resolveZone(zones []zoneSpan, start []byte, factor int) (allocator.ZoneConfig, *rspb.ZoneConfigRecord, error) {
	var chain []zoneSpan
	var def *zoneSpan
	for i, z := range zones {
		switch {
		case z.isDefault():
			def = &zones[i]
		case z.contains(start):
			chain = append(chain, z)
		}
	}
	// Nested spans: the one starting last is innermost (no partial overlaps).
	sort.SliceStable(chain, func(i, j int) bool { return bytes.Compare(chain[i].rec.StartKey, chain[j].rec.StartKey) > 0 })
	base := allocator.DefaultZoneConfig()
	nr := int32(factor)
	base.NumReplicas = &nr
	cfg := allocator.ZoneConfig{}
	var src *rspb.ZoneConfigRecord
	for i, z := range chain {
		if i == 0 {
			cfg, src = z.cfg, z.rec
			continue
		}
		cfg = cfg.InheritFrom(z.cfg)
	}
	if def != nil {
		cfg = cfg.InheritFrom(def.cfg)
		if src == nil {
			src = def.rec
		}
	}
	cfg = cfg.InheritFrom(base)
	if err := cfg.Validate(); err != nil {
		return cfg, src, err
	}
	return cfg, src, nil
}

// rangeZone resolves the zone of a range (by its start key).
func rangeZone(zones []zoneSpan, d *rspb.RangeDescriptor, factor int) (allocator.ZoneConfig, error) {
	start, err := keys.ClientKey(d.StartKey)
	if err != nil || !keys.IsUserKey(d.StartKey) {
		start = nil // a system range, or the first user range
	}
	cfg, _, err := resolveZone(zones, start, factor)
	return cfg, err
}

// SetZone validates and stores the fields of a span's zone config (see
// Admin.SetZone).
func (n *Node) SetZone(ctx context.Context, req *rspb.SetZoneRequest) (*rspb.SetZoneResponse, error) {
	ctx, cancel, err := n.operatorCtx(ctx, 30*time.Second)
	defer cancel()
	if err != nil {
		return nil, err
	}
	rec := &rspb.ZoneConfigRecord{StartKey: req.StartKey, EndKey: req.EndKey, Fields: map[string]string{}}
	switch {
	case req.DefaultZone && (len(req.StartKey) > 0 || len(req.EndKey) > 0):
		return nil, status.Error(codes.InvalidArgument, "default_zone: the default zone has no start_key or end_key")
	case !req.DefaultZone && len(req.StartKey) == 0:
		return nil, status.Error(codes.InvalidArgument, "start_key: required (or default_zone)")
	case len(req.EndKey) > 0 && bytes.Compare(req.StartKey, req.EndKey) >= 0:
		return nil, status.Errorf(codes.InvalidArgument, "end_key %q: must be after start_key %q", req.EndKey, req.StartKey)
	case len(req.Fields) == 0:
		return nil, status.Error(codes.InvalidArgument, "fields: none given (num_replicas, num_voters, num_non_voters, constraints, voter_constraints, non_voter_constraints, lease_preferences, range_min_bytes, range_max_bytes, gc_ttl)")
	}
	if req.DefaultZone {
		for _, f := range []string{"num_replicas", "num_voters"} {
			if _, ok := req.Fields[f]; ok {
				return nil, status.Errorf(codes.InvalidArgument, "%s: the default zone's replica count is the replication factor setting: use `cluster set-replicas`", f)
			}
		}
	}
	zones, err := n.readZones(ctx)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "reading zone configs: %v", err)
	}
	for _, z := range zones {
		if z.isDefault() || req.DefaultZone {
			if z.isDefault() && req.DefaultZone {
				for k, v := range z.rec.Fields {
					rec.Fields[k] = v
				}
			}
			continue
		}
		same := bytes.Equal(z.rec.StartKey, rec.StartKey) && bytes.Equal(z.rec.EndKey, rec.EndKey)
		if same {
			for k, v := range z.rec.Fields {
				rec.Fields[k] = v
			}
			continue
		}
		if partlyOverlap(z.rec, rec) {
			return nil, status.Errorf(codes.FailedPrecondition, "span %s partly overlaps the zone of %s: zones may nest but not overlap", spanOf(rec), spanOf(z.rec))
		}
	}
	for k, v := range req.Fields {
		rec.Fields[k] = v
	}
	cfg, err := allocator.ParseZoneConfig(rec.Fields)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	// The span's config with the new record in place of the old.
	next := []zoneSpan{{rec: rec, cfg: cfg}}
	for _, z := range zones {
		if !(bytes.Equal(z.rec.StartKey, rec.StartKey) && bytes.Equal(z.rec.EndKey, rec.EndKey)) {
			next = append(next, z)
		}
	}
	factor, err := n.ReplicationFactor(ctx)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	resolved, _, err := resolveZone(next, rec.StartKey, factor)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "with what it inherits: %v", err)
	}
	resp := &rspb.SetZoneResponse{Record: rec, Resolved: resolved.String()}
	nodes, err := n.allocatorNodes(ctx)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	resp.Unsatisfiable = allocator.Satisfiable(resolved, nodes)
	if !req.DryRun {
		if !req.DefaultZone {
			for _, k := range [][]byte{rec.StartKey, rec.EndKey} {
				if len(k) == 0 {
					continue
				}
				// A bound that is already a range's start answers as a split.
				if _, err := n.SplitRange(ctx, keys.UserKey(k)); err != nil {
					return nil, status.Errorf(codes.Unavailable, "splitting at the zone's bound %q: %v (nothing stored)", k, err)
				}
			}
		}
		b, err := proto.Marshal(rec)
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		if _, err := n.router.Send(ctx, []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Put{Put: &rspb.PutRequest{Key: keys.ZoneKey(rec.StartKey), Value: b}}}}); err != nil {
			return nil, status.Errorf(codes.Unavailable, "writing the zone record: %v", err)
		}
		n.kickReplicateQueue()
	}
	changes, err := n.zoneChanges(ctx, next, rec, factor, nodes)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	resp.Changes = changes
	return resp, nil
}

// kickReplicateQueue starts a queue pass now (a zone changed).
func (n *Node) kickReplicateQueue() {
	if n.replicateQueue != nil {
		n.replicateQueue.Kick()
	}
}

// zoneChanges says, per range of rec's span, what the allocator would do
// first under the zone configs zones.
func (n *Node) zoneChanges(ctx context.Context, zones []zoneSpan, rec *rspb.ZoneConfigRecord, factor int, nodes []allocator.Node) ([]string, error) {
	descs, err := n.MetaRanges(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading meta: %w", err)
	}
	fillStoreViews(nodes, descs, n.Stores())
	holders := n.leaseholders(ctx)
	var out []string
	for _, d := range descs {
		if !keys.IsUserKey(d.StartKey) {
			continue
		}
		start, _ := keys.ClientKey(d.StartKey)
		if !(zoneSpan{rec: rec}).contains(start) && !(len(rec.StartKey) == 0 && len(rec.EndKey) == 0) {
			continue
		}
		cfg, err := rangeZone(zones, d, factor)
		if err != nil {
			out = append(out, fmt.Sprintf("r%d: %v", d.RangeId, err))
			continue
		}
		lh := rebalance.LeaseholderVoter(d, holders[d.RangeId])
		r, err := allocator.Score(allocator.ScoreInput{Desc: d, Zone: cfg, Leaseholder: lh, Nodes: nodes, Thresholds: n.cfg.Thresholds})
		if err != nil {
			out = append(out, fmt.Sprintf("r%d: %v", d.RangeId, err))
			continue
		}
		if lh == 0 {
			// The lease checks were skipped; say so rather than let
			// "every check passed" stand for them.
			r.Reason += " (no node holds a valid lease on a voter now: lease checks skipped)"
		}
		what := ""
		if r.Node != 0 {
			what = fmt.Sprintf(" n%d", r.Node)
		}
		if r.From != 0 {
			what = fmt.Sprintf(" n%d->n%d", r.From, r.Node)
		}
		out = append(out, fmt.Sprintf("r%d %s: %s%s: %s", d.RangeId, spanString(d), r.Action, what, r.Reason))
	}
	return out, nil
}

func spanString(d *rspb.RangeDescriptor) string {
	return fmt.Sprintf("[%s, %s)", keys.Pretty(d.StartKey), keys.Pretty(d.EndKey))
}

// partlyOverlap: the spans overlap and neither holds the other.
func partlyOverlap(a, b *rspb.ZoneConfigRecord) bool {
	end := func(r *rspb.ZoneConfigRecord) []byte {
		if len(r.EndKey) == 0 {
			return nil
		}
		return r.EndKey
	}
	before := func(x, y []byte) bool { return y == nil || (x != nil && bytes.Compare(x, y) < 0) } // x < y, nil = +inf
	overlap := before(a.StartKey, end(b)) && before(b.StartKey, end(a))
	holds := func(o, i *rspb.ZoneConfigRecord) bool {
		return bytes.Compare(o.StartKey, i.StartKey) <= 0 && (end(o) == nil || (end(i) != nil && bytes.Compare(end(i), end(o)) <= 0))
	}
	return overlap && !holds(a, b) && !holds(b, a)
}

// spanOf renders a record's span for messages.
func spanOf(r *rspb.ZoneConfigRecord) string {
	if len(r.StartKey) == 0 && len(r.EndKey) == 0 {
		return "default"
	}
	end := fmt.Sprintf("%q", r.EndKey)
	if len(r.EndKey) == 0 {
		end = "end"
	}
	return fmt.Sprintf("[%q, %s)", r.StartKey, end)
}

// GetZone is the zone config client key k is under.
func (n *Node) GetZone(ctx context.Context, k []byte) (*rspb.GetZoneResponse, error) {
	if n.store.ClusterRecord() == nil {
		return nil, errNotInitialized
	}
	zones, err := n.readZones(ctx)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "reading zone configs: %v", err)
	}
	factor, err := n.ReplicationFactor(ctx)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	cfg, src, err := resolveZone(zones, k, factor)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "the zone of %q: %v", k, err)
	}
	return &rspb.GetZoneResponse{Record: src, Resolved: cfg.String()}, nil
}

// ListZones lists the zone config records.
func (n *Node) ListZones(ctx context.Context) (*rspb.ListZonesResponse, error) {
	if n.store.ClusterRecord() == nil {
		return nil, errNotInitialized
	}
	zones, err := n.readZones(ctx)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "reading zone configs: %v", err)
	}
	resp := &rspb.ListZonesResponse{}
	for _, z := range zones {
		resp.Records = append(resp.Records, z.rec)
	}
	return resp, nil
}
