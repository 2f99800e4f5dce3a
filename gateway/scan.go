package gateway

import (
	"bytes"
	"context"

	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/proto/rspb"
)

// ScanStream runs a scan over internal keys range by range, in chunks of at
// most one replica response each, calling emit for every non-empty chunk in
// key order (descending for reverse scans). Memory stays bounded by one
// chunk whatever the size of the result.
func (r *Router) ScanStream(ctx context.Context, s *rspb.ScanRequest, emit func([]*rspb.KeyValue) error) error {
	remaining := s.Limit
	cur := s.StartKey
	if s.Reverse {
		cur = s.EndKey
	}
	for {
		if s.Reverse && bytes.Compare(cur, s.StartKey) <= 0 || !s.Reverse && bytes.Compare(cur, s.EndKey) >= 0 {
			return nil
		}
		d, err := r.LookupRange(ctx, cur, s.Reverse)
		if err != nil {
			return err
		}
		chunk := proto.Clone(s).(*rspb.ScanRequest)
		chunk.Limit = remaining
		var next []byte // where this range's part ends
		if s.Reverse {
			chunk.EndKey = cur
			if bytes.Compare(d.StartKey, s.StartKey) > 0 {
				chunk.StartKey = d.StartKey
			}
			next = chunk.StartKey
		} else {
			chunk.StartKey = cur
			if bytes.Compare(d.EndKey, s.EndKey) < 0 {
				chunk.EndKey = d.EndKey
			}
			next = chunk.EndKey
		}
		req := &rspb.RangeRequest{RangeId: d.RangeId, Requests: []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Scan{Scan: chunk}}}}
		resp, err := r.sendResolving(ctx, d, req, nil)
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
		sc := resp.Responses[0].GetScan()
		if len(sc.Kvs) > 0 {
			if err := emit(sc.Kvs); err != nil {
				return err
			}
		}
		if s.Limit > 0 {
			remaining -= int64(len(sc.Kvs))
			if remaining <= 0 {
				return nil
			}
		}
		if len(sc.ResumeKey) > 0 {
			cur = sc.ResumeKey
		} else {
			cur = next
		}
	}
}
