package bench

import (
	"context"
	"errors"
	"fmt"

	"github.com/rangestore/rangestore/client"
)

// BankMaxRetries bounds the runs of one transfer after the first on
// rangestore (client.WithTxnMaxRetries; etcd's compare-and-swap loop is
// bounded by the context only): high, so that contention shows as
// retries and latency rather than as errors.
const BankMaxRetries = 1000

// BankCheckerPriority is the checker's transaction priority: above the
// transfers' (0), so that its snapshot read pushes their intents rather
// than waiting behind 64 writers for the whole run.
const BankCheckerPriority = 1000

var errRawBank = errors.New("rangestore driver: transactions need the client/ path (RawGRPC is set)")

// Transfer runs one transfer in a client.DB.Txn: Txn.Get of both
// accounts, Txn.Put of both (TransferAmounts), retried on conflicts.
func (d *RangestoreDriver) Transfer(ctx context.Context, from, to []byte, amount int64) (int, error) {
	db := d.db()
	if db == nil {
		return 0, errRawBank
	}
	runs := 0
	_, err := db.Txn(ctx, func(ctx context.Context, txn *client.Txn) error {
		runs++
		a, err := txn.Get(ctx, from)
		if err != nil {
			return err
		}
		b, err := txn.Get(ctx, to)
		if err != nil {
			return err
		}
		ba, err := DecodeBalance(a.Value)
		if err != nil {
			return err
		}
		bb, err := DecodeBalance(b.Value)
		if err != nil {
			return err
		}
		na, nb := TransferAmounts(ba, bb, amount)
		if err := txn.Put(ctx, from, EncodeBalance(na)); err != nil {
			return err
		}
		return txn.Put(ctx, to, EncodeBalance(nb))
	}, client.WithTxnMaxRetries(BankMaxRetries))
	return max(runs-1, 0), err
}

// Balances reads every account in one read-only client.DB.Txn (one
// Txn.Batch of Gets: one snapshot).
func (d *RangestoreDriver) Balances(ctx context.Context, accounts [][]byte) ([]int64, error) {
	db := d.db()
	if db == nil {
		return nil, errRawBank
	}
	var out []int64
	_, err := db.Txn(ctx, func(ctx context.Context, txn *client.Txn) error {
		b := new(client.Batch)
		for _, k := range accounts {
			b.Get(k)
		}
		res, err := txn.Batch(ctx, b)
		if err != nil {
			return err
		}
		out = make([]int64, len(accounts))
		for i, r := range res {
			if !r.Found {
				return fmt.Errorf("account %q has no value", accounts[i])
			}
			if out[i], err = DecodeBalance(r.KV.Value); err != nil {
				return err
			}
		}
		return nil
	}, client.WithTxnPriority(BankCheckerPriority), client.WithTxnMaxRetries(BankMaxRetries))
	if err != nil {
		return nil, err
	}
	return out, nil
}

// TxnPut2 writes both keys in one transaction: client.DB.AtomicBatch,
// which commits two ranges' writes by parallel commit (one round of
// consensus), retried on Retry as DB.Txn would.
func (d *RangestoreDriver) TxnPut2(ctx context.Context, k1, v1, k2, v2 []byte) error {
	db := d.db()
	if db == nil {
		return errRawBank
	}
	for attempt := 1; ; attempt++ {
		_, err := db.AtomicBatch(ctx, new(client.Batch).Put(k1, v1).Put(k2, v2))
		var e *client.Error
		if err == nil || !errors.As(err, &e) || e.Code != client.Retry || attempt >= BankMaxRetries {
			return err
		}
	}
}

// BatchPut2 writes both keys in one non-transactional client.DB.Batch
// (atomic when they lie in one range).
func (d *RangestoreDriver) BatchPut2(ctx context.Context, k1, v1, k2, v2 []byte) error {
	if d.db() == nil {
		return errRawBank
	}
	return d.PutBatch(ctx, [][]byte{k1, k2}, [][]byte{v1, v2})
}
