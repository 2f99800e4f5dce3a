package batcheval

import (
	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
)

// Export reads, for a span, each key's newest version in (start_ts,
// end_ts] (backups; see kv.MVCCExport), or with all_versions every
// version there (kv.MVCCExportAllVersions: a full history, for the chaos
// validator): a plain read at end_ts, so it takes read latches, enters the
// timestamp cache at end_ts and is refused at or below the GC threshold;
// an incremental export is also refused when its start_ts is below the
// threshold (Since), since versions it needs may be gone, and an
// all_versions export without a start_ts needs every version ever written
// (Since is the lowest timestamp: any GC threshold refuses it). Like a
// scan, a replica answers at most DefaultScanChunkBytes or what is left of
// the response budget, with a resume key (all_versions: at a key boundary,
// so one key's versions may go beyond it). Internal: the KV service
// refuses it (the Backup service pages it range by range).
func init() {
	register(spec[*rspb.ExportRequest, *rspb.ExportResponse]{
		name:     "export",
		readOnly: true,
		internal: true,
		span:     func(q *rspb.ExportRequest) Span { return keySpan(q.StartKey, q.EndKey) },
		payload:  func(q *rspb.ExportRequest) ([][]byte, [][]byte) { return [][]byte{q.StartKey, q.EndKey}, nil },
		check:    checkExport,
		asOf:     func(q *rspb.ExportRequest) *rspb.Timestamp { return q.EndTs },
		since:    exportSince,
		toIn: func(q *rspb.ExportRequest) *rspb.ExportRequest {
			st, en := keys.UserSpan(q.StartKey, q.EndKey)
			return &rspb.ExportRequest{StartKey: st, EndKey: en, StartTs: q.StartTs, EndTs: q.EndTs, AllVersions: q.AllVersions}
		},
		toCli: func(p *rspb.ExportResponse) {
			for _, v := range p.Versions {
				if k, err := keys.ClientKey(v.Key); err == nil {
					v.Key = k
				}
			}
			p.ResumeKey = nil
		},
		clip: func(q *rspb.ExportRequest, start, end []byte) *rspb.ExportRequest {
			return &rspb.ExportRequest{StartKey: start, EndKey: end, StartTs: q.StartTs, EndTs: q.EndTs, AllVersions: q.AllVersions}
		},
		merge: func(_ *rspb.ExportRequest, parts []*rspb.ExportResponse) *rspb.ExportResponse {
			out := &rspb.ExportResponse{}
			for _, p := range parts {
				out.Versions = append(out.Versions, p.GetVersions()...)
			}
			return out
		},
		eval: evalExport,
	})
}

// allHistory is the Since of an all_versions export without a start_ts:
// the lowest timestamp, below any GC threshold.
var allHistory = &rspb.Timestamp{Logical: 1}

// exportSince is the oldest timestamp whose versions an export needs
// besides those visible at end_ts: an incremental export's start_ts, and
// for an all_versions export without one, every timestamp.
func exportSince(q *rspb.ExportRequest) *rspb.Timestamp {
	if q.AllVersions && q.StartTs == nil {
		return allHistory
	}
	return q.StartTs
}

func checkExport(q *rspb.ExportRequest, l Limits) error {
	if err := l.checkSpan("export", q.StartKey, q.EndKey, false); err != nil {
		return err
	}
	end := TSFromProto(q.EndTs)
	if end.IsEmpty() || end.WallTime < 0 || end.Logical < 0 {
		return invalidf("export: end_ts must be a valid, non-empty timestamp (got %s)", end)
	}
	if q.StartTs != nil {
		start := TSFromProto(q.StartTs)
		if start.IsEmpty() || start.WallTime < 0 || start.Logical < 0 {
			return invalidf("export: start_ts must be empty (a full export) or a valid timestamp (got %s)", start)
		}
		if !start.Less(end) {
			return invalidf("export: start_ts %s must be below end_ts %s", start, end)
		}
	}
	return nil
}

func evalExport(a *Args, q *rspb.ExportRequest) (*rspb.ExportResponse, error) {
	if a.Batch != nil {
		return nil, invalidf("export cannot be part of a write batch")
	}
	maxBytes := min(a.Budget.left(), DefaultScanChunkBytes)
	if maxBytes <= 0 {
		return &rspb.ExportResponse{ResumeKey: q.StartKey}, nil
	}
	export := kv.MVCCExport
	if q.AllVersions {
		export = kv.MVCCExportAllVersions
	}
	xs, resume, err := export(a.Reader, q.StartKey, q.EndKey, TSFromProto(q.StartTs), a.readTS(q.EndTs),
		kv.ExportOptions{MaxBytes: maxBytes, KeyOverhead: kvResponseOverhead})
	if err != nil {
		return nil, err
	}
	res := &rspb.ExportResponse{ResumeKey: resume, Versions: make([]*rspb.ExportedVersion, 0, len(xs))}
	for _, x := range xs {
		res.Versions = append(res.Versions, &rspb.ExportedVersion{Key: x.Key, Value: x.Value, Timestamp: TSToProto(x.Timestamp), Deleted: x.Deleted})
		a.Budget.used += int64(len(x.Key)+len(x.Value)) + kvResponseOverhead
	}
	a.Budget.used += int64(len(resume))
	return res, nil
}
