package batcheval

import (
	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
)

// Scan reads the live keys of [start_key, end_key) in key order (reverse:
// descending), at most limit of them. A replica answers at most
// DefaultScanChunkBytes or what is left of the batch's response budget
// and returns a resume key, through which the gateway pages; in a write
// batch (which cannot be paged) a scan that does not fit is an error.
func init() {
	register(spec[*rspb.ScanRequest, *rspb.ScanResponse]{
		name:     "scan",
		readOnly: true,
		span:     func(q *rspb.ScanRequest) Span { return keySpan(q.StartKey, q.EndKey) },
		payload:  func(q *rspb.ScanRequest) ([][]byte, [][]byte) { return [][]byte{q.StartKey, q.EndKey}, nil },
		check: func(q *rspb.ScanRequest, l Limits) error {
			if q.Limit < 0 {
				return invalidf("scan: negative limit %d", q.Limit)
			}
			return l.checkSpan("scan", q.StartKey, q.EndKey, false)
		},
		asOf: func(q *rspb.ScanRequest) *rspb.Timestamp { return q.AsOf },
		toIn: func(q *rspb.ScanRequest) *rspb.ScanRequest {
			st, en := keys.UserSpan(q.StartKey, q.EndKey)
			return &rspb.ScanRequest{StartKey: st, EndKey: en, Limit: q.Limit, Reverse: q.Reverse, AsOf: q.AsOf, KeysOnly: q.KeysOnly}
		},
		toCli: func(p *rspb.ScanResponse) {
			for _, x := range p.Kvs {
				stripUserPrefix(x)
			}
			p.ResumeKey = nil
		},
		clip: func(q *rspb.ScanRequest, start, end []byte) *rspb.ScanRequest {
			c := proto.Clone(q).(*rspb.ScanRequest)
			c.StartKey, c.EndKey = start, end
			return c
		},
		merge: mergeScan,
		eval:  evalScan,
	})
}

// mergeScan concatenates the parts in scan order (reverse: from the last
// range back) and applies the limit.
func mergeScan(q *rspb.ScanRequest, parts []*rspb.ScanResponse) *rspb.ScanResponse {
	out := &rspb.ScanResponse{}
	for i := range parts {
		p := parts[i]
		if q.Reverse {
			p = parts[len(parts)-1-i]
		}
		out.Kvs = append(out.Kvs, p.GetKvs()...)
	}
	if q.Limit > 0 && int64(len(out.Kvs)) > q.Limit {
		out.Kvs = out.Kvs[:q.Limit]
	}
	return out
}

func evalScan(a *Args, q *rspb.ScanRequest) (*rspb.ScanResponse, error) {
	ts := a.readTS(q.AsOf)
	if a.Batch == nil {
		return a.Budget.scan(a.Reader, q, ts, DefaultScanChunkBytes, a.intentTxn(), a.uncertaintyLimit(ts))
	}
	res, err := a.Budget.scan(a.Reader, q, ts, 0, a.intentTxn(), a.uncertaintyLimit(ts))
	if err != nil {
		return nil, err
	}
	if len(res.ResumeKey) > 0 && (q.Limit == 0 || int64(len(res.Kvs)) < q.Limit) {
		return nil, invalidf("scan in a write batch returns more than max_batch_bytes of %d: scan outside the write batch, or with a limit", a.Budget.total)
	}
	return res, nil
}

// scan runs a scan within what is left of the budget (and at most chunk
// bytes if chunk > 0): once the budget is spent, a scan returns nothing and
// resumes where it starts, so the caller pages through the rest. txn (nil:
// none) is the reading transaction, which sees its own intents, and limit
// its uncertainty limit.
func (b *ReadBudget) scan(r kv.Reader, s *rspb.ScanRequest, ts kv.Timestamp, chunk int64, txn *kv.IntentTxn, limit kv.Timestamp) (*rspb.ScanResponse, error) {
	maxBytes := b.left()
	if chunk > 0 {
		maxBytes = min(maxBytes, chunk)
	}
	if maxBytes <= 0 {
		resume := s.StartKey
		if s.Reverse {
			resume = s.EndKey
		}
		if len(resume) > 0 {
			return &rspb.ScanResponse{ResumeKey: resume}, nil
		}
		maxBytes = 1 // (an open end cannot be a resume key: one key)
	}
	kvs, resume, err := kv.MVCCScan(r, s.StartKey, s.EndKey, ts, kv.ScanOptions{Limit: int(s.Limit), Reverse: s.Reverse, MaxBytes: maxBytes, KeyOverhead: kvResponseOverhead, Txn: txn, Uncertainty: limit})
	if err != nil {
		return nil, err
	}
	res := &rspb.ScanResponse{ResumeKey: resume, Kvs: make([]*rspb.KeyValue, 0, len(kvs))}
	for _, x := range kvs {
		res.Kvs = append(res.Kvs, kvToProto(x, s.KeysOnly))
	}
	for _, x := range res.Kvs {
		b.used += int64(len(x.Key)+len(x.Value)) + kvResponseOverhead
	}
	b.used += int64(len(res.ResumeKey))
	return res, nil
}
