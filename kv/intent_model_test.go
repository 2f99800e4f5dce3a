package kv

import (
	"errors"
	"fmt"
	"math/rand"
	"sort"
	"testing"
)

// intentModel is the expected MVCC state with intents: per key, the
// committed versions and at most one intent.
type intentModel struct {
	committed map[string][]modelVersion // ascending timestamps
	intent    map[string]*modelIntent
}

type modelVersion struct {
	ts    Timestamp
	value *string // nil: tombstone
}

type modelIntent struct {
	txn string
	modelVersion
}

func (m *intentModel) newest(k string) (Timestamp, bool) {
	vs := m.committed[k]
	if len(vs) == 0 {
		return Timestamp{}, false
	}
	return vs[len(vs)-1].ts, true
}

// get is what a read of k at ts by txn ("" for none) returns: the value
// (nil: absent) or a conflict.
func (m *intentModel) get(k string, ts Timestamp, txn string) (value *string, conflict bool) {
	if in := m.intent[k]; in != nil {
		if in.txn == txn {
			return in.value, false
		}
		if in.ts.LessEq(ts) {
			return nil, true
		}
	}
	vs := m.committed[k]
	for i := len(vs) - 1; i >= 0; i-- {
		if vs[i].ts.LessEq(ts) {
			return vs[i].value, false
		}
	}
	return nil, false
}

// TestIntentsAgainstModel drives random transactional and plain writes,
// resolutions and reads (gets and scans, by the owners and by others, at
// random timestamps) against the engine and a model, and compares every
// outcome.
func TestIntentsAgainstModel(t *testing.T) {
	for seed := int64(1); seed <= 20; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { runIntentModel(t, seed) })
	}
}

func runIntentModel(t *testing.T, seed int64) {
	rng := rand.New(rand.NewSource(seed))
	e := newTestEngine(t)
	m := &intentModel{committed: map[string][]modelVersion{}, intent: map[string]*modelIntent{}}
	keys := []string{"k0", "k1", "k2", "k3", "k4"}
	txns := []string{"A", "B", "C"}
	now := int64(10)
	tick := func() Timestamp { now += int64(1 + rng.Intn(3)); return ts(now) }
	txnOf := func(id string) *IntentTxn { return &IntentTxn{ID: []byte(id)} }
	// pickReader is a random reader (a transaction, or none: "") and a
	// timestamp to read at.
	pickReader := func() (string, Timestamp, *IntentTxn) {
		reader := ""
		if rng.Intn(2) == 0 {
			reader = txns[rng.Intn(len(txns))]
		}
		at := ts(max(1, now-int64(rng.Intn(20))+1))
		if reader == "" {
			return "", at, nil
		}
		return reader, at, txnOf(reader)
	}
	for step := 0; step < 300; step++ {
		k := keys[rng.Intn(len(keys))]
		what := fmt.Sprintf("seed %d step %d", seed, step)
		switch op := rng.Intn(6); op {
		case 0, 1: // transactional write (sometimes below the newest version)
			txn := txns[rng.Intn(len(txns))]
			at := tick()
			if rng.Intn(4) == 0 {
				at = ts(now - int64(rng.Intn(10)))
			}
			var v *string
			if rng.Intn(5) > 0 {
				v = val(fmt.Sprintf("%s-%d", txn, step))
			}
			err := write(t, e, func(b *Batch) error { return MVCCPut(b, []byte(k), at, []byte(deref(v)), v == nil, txnOf(txn)) })
			in := m.intent[k]
			newest, has := m.newest(k)
			var ie *IntentError
			var wto *WriteTooOldError
			switch {
			case in != nil && in.txn != txn:
				if !errors.As(err, &ie) {
					t.Fatalf("%s: %s's write of %s over %s's intent: %v, want an IntentError", what, txn, k, in.txn, err)
				}
			case has && at.LessEq(newest):
				if !errors.As(err, &wto) || wto.Existing != newest {
					t.Fatalf("%s: %s's write of %s at %s over a version at %s: %v, want WriteTooOld", what, txn, k, at, newest, err)
				}
			default:
				if err != nil {
					t.Fatalf("%s: %s's write of %s at %s: %v", what, txn, k, at, err)
				}
				m.intent[k] = &modelIntent{txn: txn, modelVersion: modelVersion{ts: at, value: v}}
			}
		case 2: // plain write above everything
			at := tick()
			v := val(fmt.Sprintf("plain-%d", step))
			err := write(t, e, func(b *Batch) error { return MVCCPut(b, []byte(k), at, []byte(*v), false, nil) })
			var ie *IntentError
			if in := m.intent[k]; in != nil {
				if !errors.As(err, &ie) {
					t.Fatalf("%s: plain write of %s over an intent: %v", what, k, err)
				}
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			m.committed[k] = append(m.committed[k], modelVersion{ts: at, value: v})
		case 3: // resolve one key of a transaction
			txn := txns[rng.Intn(len(txns))]
			commit := rng.Intn(2) == 0
			at := tick()
			var found bool
			err := write(t, e, func(b *Batch) (err error) {
				found, err = MVCCResolveIntent(b, []byte(k), []byte(txn), 0, commit, at)
				return err
			})
			in := m.intent[k]
			mine := in != nil && in.txn == txn
			if err != nil || found != mine {
				t.Fatalf("%s: resolve %s of %s: found %v, %v; want found %v", what, k, txn, found, err, mine)
			}
			if mine {
				delete(m.intent, k)
				if commit {
					m.committed[k] = append(m.committed[k], modelVersion{ts: at, value: in.value})
				}
			}
		case 4: // get by a reader at a random timestamp
			reader, at, rt := pickReader()
			x, found, err := MVCCGetTxn(e, []byte(k), at, rt)
			want, conflict := m.get(k, at, reader)
			var ie *IntentError
			switch {
			case conflict:
				if !errors.As(err, &ie) {
					t.Fatalf("%s: get %s at %s by %q: %v, want a conflict", what, k, at, reader, err)
				}
			case err != nil:
				t.Fatalf("%s: get %s at %s by %q: %v", what, k, at, reader, err)
			case (want == nil) == found || (found && string(x.Value) != *want):
				t.Fatalf("%s: get %s at %s by %q = %q (found %v), want %v", what, k, at, reader, x.Value, found, deref(want))
			}
		case 5: // scan of everything by a reader
			reader, at, rt := pickReader()
			kvs, _, err := MVCCScan(e, nil, nil, at, ScanOptions{Txn: rt, Reverse: rng.Intn(2) == 0})
			var wantKeys, conflicts []string
			for _, kk := range keys {
				v, c := m.get(kk, at, reader)
				switch {
				case c:
					conflicts = append(conflicts, kk)
				case v != nil:
					wantKeys = append(wantKeys, kk+"="+*v)
				}
			}
			var ie *IntentError
			if len(conflicts) > 0 {
				var got []string
				if errors.As(err, &ie) {
					for _, in := range ie.Intents {
						got = append(got, string(in.Key))
					}
					sort.Strings(got)
				}
				if fmt.Sprint(got) != fmt.Sprint(conflicts) {
					t.Fatalf("%s: scan at %s by %q: %v, want conflicts on %v", what, at, reader, err, conflicts)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%s: scan at %s by %q: %v", what, at, reader, err)
			}
			var got []string
			for _, x := range kvs {
				got = append(got, string(x.Key)+"="+string(x.Value))
			}
			sort.Strings(got)
			if fmt.Sprint(got) != fmt.Sprint(wantKeys) {
				t.Fatalf("%s: scan at %s by %q = %v, want %v", what, at, reader, got, wantKeys)
			}
		}
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
