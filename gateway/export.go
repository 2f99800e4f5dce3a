package gateway

import (
	"bytes"
	"context"

	"github.com/rangestore/rangestore/proto/rspb"
)

// ExportStream runs an export over internal keys range by range, in chunks
// of at most one replica response each (like ScanStream), calling emit for
// every non-empty chunk in key order. Each chunk is a plain read request
// to the range, served where reads are served (today the leaseholder).
func (r *Router) ExportStream(ctx context.Context, q *rspb.ExportRequest, emit func([]*rspb.ExportedVersion) error) error {
	cur := q.StartKey
	for len(q.EndKey) == 0 || bytes.Compare(cur, q.EndKey) < 0 {
		d, err := r.LookupRange(ctx, cur, false)
		if err != nil {
			return err
		}
		chunk := &rspb.ExportRequest{StartKey: cur, EndKey: q.EndKey, StartTs: q.StartTs, EndTs: q.EndTs}
		if len(q.EndKey) == 0 || bytes.Compare(d.EndKey, q.EndKey) < 0 {
			chunk.EndKey = d.EndKey
		}
		req := &rspb.RangeRequest{RangeId: d.RangeId, Requests: []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Export{Export: chunk}}}}
		resp, err := r.sendToRange(ctx, d, req)
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
