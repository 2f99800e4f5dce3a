package gateway

import (
	"bytes"
	"context"

	"github.com/rangestore/rangestore/proto/rspb"
)

// ExportStream runs an export over internal keys range by range, in chunks
// of at most one replica response each (like ScanStream), calling emit for
// every non-empty chunk in key order. Each chunk is a follower read at
// end_ts: the nearest replica (this node's own, then by locality; a read
// replica or follower) serves it if its closed timestamp has reached
// end_ts, without waiting, so a backup a few seconds in the past does not
// load the leaseholders; otherwise the leaseholder serves it.
func (r *Router) ExportStream(ctx context.Context, q *rspb.ExportRequest, emit func([]*rspb.ExportedVersion) error) error {
	cur := q.StartKey
	for len(q.EndKey) == 0 || bytes.Compare(cur, q.EndKey) < 0 {
		d, err := r.LookupRange(ctx, cur, false)
		if err != nil {
			return err
		}
		chunk := &rspb.ExportRequest{StartKey: cur, EndKey: q.EndKey, StartTs: q.StartTs, EndTs: q.EndTs, AllVersions: q.AllVersions}
		if len(q.EndKey) == 0 || bytes.Compare(d.EndKey, q.EndKey) < 0 {
			chunk.EndKey = d.EndKey
		}
		req := &rspb.RangeRequest{RangeId: d.RangeId, Requests: []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Export{Export: chunk}}}}
		resp, err := r.sendFollowerRead(ctx, d, req, &readOpts{mode: rspb.ReadMode_BOUNDED_STALENESS})
		if r.staleRoute(d, err) {
			if ctx.Err() != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		if resp.Error != nil {
			return &RangeError{E: resp.Error}
		}
		ex := resp.Responses[0].GetExport()
		if len(ex.GetVersions()) > 0 {
			if err := emit(ex.Versions); err != nil {
				return err
			}
		}
		switch {
		case len(ex.GetResumeKey()) > 0:
			cur = ex.ResumeKey
		case len(chunk.EndKey) == 0:
			return nil
		default:
			cur = chunk.EndKey
		}
	}
	return nil
}
