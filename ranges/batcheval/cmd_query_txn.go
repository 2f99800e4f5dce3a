package batcheval

import (
	"github.com/rangestore/rangestore/proto/rspb"
)

// QueryTxn reads a transaction's record at its anchor's range (found false:
// none). Internal.
func init() {
	register(spec[*rspb.QueryTxnRequest, *rspb.QueryTxnResponse]{
		name:     "query_txn",
		readOnly: true,
		internal: true,
		span:     func(q *rspb.QueryTxnRequest) Span { return pointSpan(q.Key) },
		payload:  func(q *rspb.QueryTxnRequest) ([][]byte, [][]byte) { return [][]byte{q.Key}, nil },
		check: func(q *rspb.QueryTxnRequest, l Limits) error {
			if err := l.checkInternalKey("query_txn", q.Key); err != nil {
				return err
			}
			return checkTxnMeta("query_txn", q.Txn)
		},
		toIn: identityIn[*rspb.QueryTxnRequest],
		eval: func(a *Args, q *rspb.QueryTxnRequest) (*rspb.QueryTxnResponse, error) {
			if err := checkTxnMeta("query_txn", q.Txn); err != nil {
				return nil, err
			}
			rec, err := readRecord(a.Reader, q.Txn)
			if err != nil || rec == nil {
				return &rspb.QueryTxnResponse{}, err
			}
			return &rspb.QueryTxnResponse{Txn: rec, Found: true}, nil
		},
	})
}
