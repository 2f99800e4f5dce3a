package kv

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"sort"
	"testing"
)

// refreshOutcome renders MVCCCheckRefresh's result: "ok", "write
// key@wall.logical" or "intent key@wall.logical"; another error fails t.
func refreshOutcome(t *testing.T, err error) string {
	t.Helper()
	if err == nil {
		return "ok"
	}
	var rc *RefreshConflictError
	if !errors.As(err, &rc) {
		t.Fatalf("error %v, want a *RefreshConflictError", err)
	}
	what := "write"
	if rc.Intent {
		what = "intent"
	}
	return fmt.Sprintf("%s %q@%d.%d", what, rc.Key, rc.Timestamp.WallTime, rc.Timestamp.Logical)
}

func TestMVCCCheckRefresh(t *testing.T) {
	e := newTestEngine(t)
	applyOps(t, e, []op{
		put("a", 10, "a10"),                      // unchanged
		put("b", 10, "b10"), put("b", 30, "b30"), // written in the window
		put("c", 20, "c20"),                      // at exactly from
		put("d", 10, "d10"), put("d", 40, "d40"), // at exactly to
		put("e", 10, "e10"), put("e", 50, "e50"), // above to
		put("f", 10, "f10"),               // + A's intent
		put("g", 10, "g10"),               // + A's intent of epoch 1
		put("h", 10, "h10"),               // + B's intent below to
		put("i", 10, "i10"),               // + B's intent above to
		put("j", 30, "j30"),               // + B's intent above to, over a write in the window
		put("k", 10, "k10"), del("k", 25), // a deletion in the window
		put("l", 30, "l30"), // + A's intent over a write in the window
		put("m", 10, "m10"), put("m", 30, "m30"), put("m", 40, "m40"), put("m", 60, "m60"),
		put("x", 10, "x10"), put("x\x00", 30, "x0"), put("x\x00\x00", 10, "x00"),
	})
	mustWrite(t, e, func(b *Batch) error {
		for _, w := range []struct {
			key  string
			wall int64
			txn  *IntentTxn
		}{{"f", 30, txnA(0)}, {"g", 30, txnA(1)}, {"h", 35, txnB(0)}, {"i", 45, txnB(0)}, {"j", 45, txnB(0)}, {"l", 35, txnA(0)}} {
			if err := MVCCPut(b, []byte(w.key), ts(w.wall), []byte("new"), false, w.txn); err != nil {
				return err
			}
		}
		return nil
	})

	for _, c := range []struct {
		name       string
		start, end string // end "": a point read of start
		from, to   int64
		txn        *IntentTxn
		want       string
	}{
		{"no change", "a", "", 20, 40, txnA(0), "ok"},
		{"a committed write in the window", "b", "", 20, 40, txnA(0), `write "b"@30.0`},
		{"a write at exactly from was read", "c", "", 20, 40, txnA(0), "ok"},
		{"a write at exactly to conflicts", "d", "", 20, 40, txnA(0), `write "d"@40.0`},
		{"a write above to is not read", "e", "", 20, 40, txnA(0), "ok"},
		{"own intent", "f", "", 20, 40, txnA(0), "ok"},
		{"own intent of another epoch", "g", "", 20, 40, txnA(0), "ok"},
		{"own intent of an earlier epoch", "g", "", 20, 40, txnA(2), "ok"},
		{"another transaction's intent below to", "h", "", 20, 40, txnA(0), `intent "h"@35.0`},
		{"another transaction's intent at to", "h", "", 20, 35, txnA(0), `intent "h"@35.0`},
		{"the intent's owner refreshes over it", "h", "", 20, 40, txnB(3), "ok"},
		{"no transaction: every intent is another's", "f", "", 20, 40, nil, `intent "f"@30.0`},
		{"another transaction's intent above to", "i", "", 20, 40, txnA(0), "ok"},
		{"beneath an intent above to: a write in the window", "j", "", 20, 40, txnA(0), `write "j"@30.0`},
		{"a deletion in the window", "k", "", 20, 40, txnA(0), `write "k"@25.0`},
		{"own intent does not hide a write in the window", "l", "", 20, 40, txnA(0), `write "l"@30.0`},
		{"the newest write at or below to is named", "m", "", 20, 50, txnA(0), `write "m"@40.0`},
		{"versions above and below a quiet window", "m", "", 40, 59, txnA(0), "ok"},
		{"an empty window still meets intents", "h", "", 40, 40, txnA(0), `intent "h"@35.0`},
		{"a key without versions", "zz", "", 20, 40, txnA(0), "ok"},
		{"span: the first conflict in key order", "a", "z", 20, 40, txnA(0), `write "b"@30.0`},
		{"span before a conflict", "a", "b", 20, 40, txnA(0), "ok"},
		{"span of own and high intents", "e", "h", 20, 40, txnA(0), "ok"},
		{"span reaching a foreign intent", "e", "i", 20, 40, txnA(0), `intent "h"@35.0`},
		{"a late window still meets the intents below it", "a", "z", 60, 70, txnA(0), `intent "h"@35.0`},
		{"span of the owner of every foreign intent", "h", "j", 20, 40, txnB(0), "ok"},
		{"empty span", "b", "b", 20, 40, txnA(0), "ok"},
		{"point x does not include x\\x00", "x", "", 20, 40, txnA(0), "ok"},
		{"span [x, x\\x00) excludes x\\x00", "x", "x\x00", 20, 40, txnA(0), "ok"},
		{"span [x, x\\x00\\x00) includes x\\x00", "x", "x\x00\x00", 20, 40, txnA(0), `write "x\x00"@30.0`},
		{"point x\\x00", "x\x00", "", 20, 40, txnA(0), `write "x\x00"@30.0`},
		{"span after x\\x00", "x\x00\x00", "y", 20, 40, txnA(0), "ok"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var end []byte
			if c.end != "" || c.start == c.end {
				end = []byte(c.end)
			}
			got := refreshOutcome(t, MVCCCheckRefresh(e, []byte(c.start), end, ts(c.from), ts(c.to), c.txn))
			if got != c.want {
				t.Errorf("refresh [%q, %q) from %d to %d = %s, want %s", c.start, c.end, c.from, c.to, got, c.want)
			}
		})
	}
}

func TestMVCCCheckRefreshErrors(t *testing.T) {
	e := newTestEngine(t)
	applyOps(t, e, []op{put("a", 50, "a50")})
	for _, c := range []struct {
		name       string
		start, end []byte
		from, to   Timestamp
		txn        *IntentTxn
		want       error // nil: any non-conflict error
	}{
		{"empty point key", nil, nil, ts(1), ts(2), nil, ErrEmptyKey},
		{"empty from", []byte("a"), nil, Timestamp{}, ts(2), nil, ErrEmptyTimestamp},
		{"empty to", []byte("a"), nil, ts(1), Timestamp{}, nil, ErrEmptyTimestamp},
		{"to before from", []byte("a"), nil, ts(3), ts(2), nil, nil},
		{"start after end", []byte("b"), []byte("a"), ts(1), ts(2), nil, ErrInvalidSpan},
		{"transaction without an ID", []byte("a"), nil, ts(1), ts(2), &IntentTxn{}, nil},
	} {
		err := MVCCCheckRefresh(e, c.start, c.end, c.from, c.to, c.txn)
		var rc *RefreshConflictError
		if err == nil || errors.As(err, &rc) || (c.want != nil && !errors.Is(err, c.want)) {
			t.Errorf("%s: %v, want an argument error (%v)", c.name, err, c.want)
		}
	}

	// Malformed data: an intent below a committed version, a value with an
	// unknown tag.
	mustWrite(t, e, func(b *Batch) error {
		if err := b.b.Set(EncodeMVCCKey([]byte("a"), ts(25)), encodeIntentValue(txnB(0), []byte("v"), false), nil); err != nil {
			return err
		}
		return b.b.Set(EncodeMVCCKey([]byte("b"), ts(25)), []byte{9, 'v'}, nil)
	})
	if err := MVCCCheckRefresh(e, []byte("a"), nil, ts(20), ts(40), txnA(0)); !errors.Is(err, ErrIntentInvariant) {
		t.Errorf("intent below a newer version: %v, want ErrIntentInvariant", err)
	}
	err := MVCCCheckRefresh(e, []byte("b"), []byte("c"), ts(20), ts(40), txnA(0))
	var rc *RefreshConflictError
	if err == nil || errors.As(err, &rc) {
		t.Errorf("malformed value: %v, want a decoding error", err)
	}
}

// refreshModel is a reference store: the timestamps of each key's
// committed versions (values and deletions alike) and at most one intent
// per key, above them.
type refreshModel struct {
	committed map[string][]Timestamp
	intent    map[string]Intent
}

func (m *refreshModel) check(start, end []byte, from, to Timestamp, txn *IntentTxn) *RefreshConflictError {
	var ks []string
	for k := range m.committed {
		ks = append(ks, k)
	}
	for k := range m.intent {
		if m.committed[k] == nil {
			ks = append(ks, k)
		}
	}
	sort.Strings(ks)
	for _, k := range ks {
		if end == nil && k != string(start) || end != nil && (k < string(start) || k >= string(end)) {
			continue
		}
		if in, ok := m.intent[k]; ok && (txn == nil || !bytes.Equal(in.Txn.ID, txn.ID)) && in.Timestamp.LessEq(to) {
			return &RefreshConflictError{Key: []byte(k), Timestamp: in.Timestamp, Intent: true}
		}
		var newest Timestamp
		for _, v := range m.committed[k] {
			if from.Less(v) && v.LessEq(to) && newest.Less(v) {
				newest = v
			}
		}
		if !newest.IsEmpty() {
			return &RefreshConflictError{Key: []byte(k), Timestamp: newest}
		}
	}
	return nil
}

// TestMVCCCheckRefreshRandom compares refreshes of random points and spans
// over random histories (keys with 0x00 bytes, deletions, intents of two
// transactions at various epochs) with the model.
func TestMVCCCheckRefreshRandom(t *testing.T) {
	rng := rand.New(rand.NewSource(16))
	e := newTestEngine(t)
	m := &refreshModel{committed: map[string][]Timestamp{}, intent: map[string]Intent{}}
	randTime := func() Timestamp { return Timestamp{WallTime: 1 + rng.Int63n(12), Logical: int32(rng.Intn(2))} }
	b := e.NewBatch()
	for i := 0; i < 500; i++ {
		k, vts := randKey(rng, false), randTime()
		var err error
		if rng.Intn(4) == 0 {
			err = b.DeleteMVCC(k, vts)
		} else {
			err = b.PutMVCC(k, vts, []byte(fmt.Sprint(i)))
		}
		if err != nil {
			t.Fatal(err)
		}
		if !containsTS(m.committed[string(k)], vts) {
			m.committed[string(k)] = append(m.committed[string(k)], vts)
		}
	}
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
	b.Close()
	b = e.NewBatch()
	for i := 0; i < 120; i++ {
		k := randKey(rng, false)
		if _, ok := m.intent[string(k)]; ok {
			continue
		}
		vts := randTime()
		for _, v := range m.committed[string(k)] {
			if vts.LessEq(v) {
				vts = v.Next()
			}
		}
		txn := &IntentTxn{ID: []byte{"AB"[rng.Intn(2)]}, Epoch: int32(rng.Intn(3))}
		if err := MVCCPut(b, k, vts, nil, rng.Intn(3) == 0, txn); err != nil {
			t.Fatal(err)
		}
		m.intent[string(k)] = Intent{Key: k, Timestamp: vts, Txn: *txn}
	}
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
	b.Close()

	var conflicts, intents int
	for trial := 0; trial < 2000; trial++ {
		start, end := randKey(rng, false), []byte(nil)
		if rng.Intn(3) != 0 {
			start, end = randKey(rng, true), randKey(rng, true)
			if bytes.Compare(start, end) > 0 {
				start, end = end, start
			}
		}
		from, to := randTime(), randTime()
		if to.Less(from) {
			from, to = to, from
		}
		var txn *IntentTxn
		if rng.Intn(4) != 0 {
			txn = &IntentTxn{ID: []byte{"AB"[rng.Intn(2)]}, Epoch: int32(rng.Intn(3))}
		}
		err := MVCCCheckRefresh(e, start, end, from, to, txn)
		want := m.check(start, end, from, to, txn)
		var got *RefreshConflictError
		if err != nil && !errors.As(err, &got) {
			t.Fatalf("refresh [%q, %q) %s..%s: %v", start, end, from, to, err)
		}
		if (got == nil) != (want == nil) || got != nil && (!bytes.Equal(got.Key, want.Key) || got.Timestamp != want.Timestamp || got.Intent != want.Intent) {
			t.Fatalf("refresh [%q, %q) %s..%s txn %v = %v, want %v", start, end, from, to, txn, err, want)
		}
		if got != nil {
			conflicts++
			if got.Intent {
				intents++
			}
		}
	}
	t.Logf("%d of 2000 refreshes conflict, %d of them on intents", conflicts, intents)
	if conflicts < 200 || conflicts > 1800 || intents < 50 || conflicts-intents < 50 {
		t.Errorf("%d of 2000 refreshes conflict, %d on intents: the random cases do not cover every outcome", conflicts, intents)
	}
}

func containsTS(s []Timestamp, ts Timestamp) bool {
	for _, x := range s {
		if x == ts {
			return true
		}
	}
	return false
}
