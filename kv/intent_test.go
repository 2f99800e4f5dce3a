package kv

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// dumpAll renders every version in the engine in engine order:
// "key@wall=value", "key@wall=<del>", and for intents
// "key@wall=value(txn/epoch)".
func dumpAll(t *testing.T, r Reader) string {
	t.Helper()
	return strings.Join(dump(t, r), " ")
}

func txnA(epoch int32) *IntentTxn {
	return &IntentTxn{ID: []byte("A"), Epoch: epoch, Meta: []byte("meta-A")}
}
func txnB(epoch int32) *IntentTxn { return &IntentTxn{ID: []byte("B"), Epoch: epoch} }

// write runs fn on a batch and commits it; fn's error is returned and the
// batch discarded.
func write(t *testing.T, e *Engine, fn func(b *Batch) error) error {
	t.Helper()
	b := e.NewBatch()
	defer b.Close()
	if err := fn(b); err != nil {
		return err
	}
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
	return nil
}

func mustWrite(t *testing.T, e *Engine, fn func(b *Batch) error) {
	t.Helper()
	if err := write(t, e, fn); err != nil {
		t.Fatal(err)
	}
}

// intentKeys lists the keys and timestamps of an *IntentError, or fails.
func intentKeys(t *testing.T, err error) string {
	t.Helper()
	var ie *IntentError
	if !errors.As(err, &ie) {
		t.Fatalf("error %v, want an *IntentError", err)
	}
	var s []string
	for _, in := range ie.Intents {
		s = append(s, fmt.Sprintf("%s@%d(%s)", in.Key, in.Timestamp.WallTime, in.Txn.ID))
	}
	return strings.Join(s, " ")
}

func TestIntentReads(t *testing.T) {
	e := newTestEngine(t)
	applyOps(t, e, []op{put("a", 10, "a10"), put("b", 10, "b10"), put("c", 10, "c10")})
	mustWrite(t, e, func(b *Batch) error {
		if err := MVCCPut(b, []byte("a"), ts(20), []byte("a20"), false, txnA(0)); err != nil {
			return err
		}
		return MVCCPut(b, []byte("b"), ts(20), nil, true, txnA(0))
	})
	if got, want := dumpAll(t, e), "a@20=a20(A/0) a@10=a10 b@20=<del>(A/0) b@10=b10 c@10=c10"; got != want {
		t.Fatalf("versions %s, want %s", got, want)
	}

	for _, c := range []struct {
		name   string
		key    string
		readTS int64
		txn    *IntentTxn
		want   string // "value@wall", "absent", or "conflict key@wall(txn)"
	}{
		{"other reader below the intent reads beneath", "a", 15, nil, "a10@10"},
		{"other reader at the intent conflicts", "a", 20, nil, "conflict a@20(A)"},
		{"other reader above the intent conflicts", "a", 99, txnB(0), "conflict a@20(A)"},
		{"the owner reads its intent above its read timestamp", "a", 15, txnA(0), "a20@20"},
		{"the owner reads its deletion", "b", 30, txnA(0), "absent"},
		{"a later epoch of the owner reads beneath its old intent", "a", 30, txnA(1), "a10@10"},
		{"no intent: a plain read", "c", 30, txnB(0), "c10@10"},
	} {
		t.Run(c.name, func(t *testing.T) {
			x, found, err := MVCCGetTxn(e, []byte(c.key), ts(c.readTS), c.txn)
			var got string
			switch {
			case err != nil:
				got = "conflict " + intentKeys(t, err)
			case !found:
				got = "absent"
			default:
				got = fmt.Sprintf("%s@%d", x.Value, x.Timestamp.WallTime)
			}
			if got != c.want {
				t.Fatalf("get %s at %d by %v = %s, want %s", c.key, c.readTS, c.txn, got, c.want)
			}
		})
	}

	// Scans: the owner sees its writes; others collect every conflict.
	for _, reverse := range []bool{false, true} {
		kvs, _, err := MVCCScan(e, []byte("a"), []byte("z"), ts(30), ScanOptions{Txn: txnA(0), Reverse: reverse})
		if err != nil {
			t.Fatal(err)
		}
		if reverse {
			kvs = reversed(kvs)
		}
		if got, want := renderKVs(kvs), "a@20=a20 c@10=c10"; got != want {
			t.Fatalf("owner's scan (reverse %v) = %s, want %s", reverse, got, want)
		}
		_, _, err = MVCCScan(e, []byte("a"), []byte("z"), ts(30), ScanOptions{Reverse: reverse})
		got := intentKeys(t, err)
		if want := map[bool]string{false: "a@20(A) b@20(A)", true: "b@20(A) a@20(A)"}[reverse]; got != want {
			t.Fatalf("other scan (reverse %v) conflicts %s, want %s", reverse, got, want)
		}
		kvs, _, err = MVCCScan(e, []byte("a"), []byte("z"), ts(15), ScanOptions{Reverse: reverse})
		if err != nil {
			t.Fatal(err)
		}
		if reverse {
			kvs = reversed(kvs)
		}
		if got, want := renderKVs(kvs), "a@10=a10 b@10=b10 c@10=c10"; got != want {
			t.Fatalf("scan below the intents (reverse %v) = %s, want %s", reverse, got, want)
		}
	}
	// A limited scan resumes after the keys it returned, intents or not.
	kvs, resume, err := MVCCScan(e, []byte("a"), []byte("z"), ts(15), ScanOptions{Limit: 1})
	if err != nil || renderKVs(kvs) != "a@10=a10" || string(resume) != "b" {
		t.Fatalf("limited scan = %s, resume %q, %v", renderKVs(kvs), resume, err)
	}
}

func TestIntentWrites(t *testing.T) {
	e := newTestEngine(t)
	applyOps(t, e, []op{put("a", 10, "a10"), put("c", 30, "c30")})
	mustWrite(t, e, func(b *Batch) error { return MVCCPut(b, []byte("a"), ts(20), []byte("A1"), false, txnA(0)) })
	before := dumpAll(t, e)

	// Another writer, transactional or not, at any timestamp, conflicts
	// and writes nothing.
	for _, txn := range []*IntentTxn{nil, txnB(0)} {
		for _, wall := range []int64{15, 40} {
			err := write(t, e, func(b *Batch) error { return MVCCPut(b, []byte("a"), ts(wall), []byte("x"), false, txn) })
			if got := intentKeys(t, err); got != "a@20(A)" {
				t.Fatalf("put by %v at %d conflicts with %s", txn, wall, got)
			}
		}
	}
	err := write(t, e, func(b *Batch) error {
		_, _, err := MVCCDeleteRange(b, []byte("a"), []byte("z"), ts(15), 0)
		return err
	})
	if got := intentKeys(t, err); got != "a@20(A)" {
		t.Fatalf("delete range below the intent conflicts with %s", got)
	}
	if got := dumpAll(t, e); got != before {
		t.Fatalf("a refused write changed the data: %s, was %s", got, before)
	}

	// A transactional write at or below a committed version is too old.
	err = write(t, e, func(b *Batch) error { return MVCCPut(b, []byte("c"), ts(30), []byte("x"), false, txnA(0)) })
	var wto *WriteTooOldError
	if !errors.As(err, &wto) || wto.Existing != ts(30) || wto.ActualTimestamp != ts(30).Next() {
		t.Fatalf("write at 30 over c@30 = %v, want WriteTooOld with actual %s", err, ts(30).Next())
	}

	// The owner rewrites its intent, moving it up and into a new epoch;
	// one intent remains.
	mustWrite(t, e, func(b *Batch) error { return MVCCPut(b, []byte("a"), ts(25), []byte("A2"), false, txnA(1)) })
	if got, want := dumpAll(t, e), "a@25=A2(A/1) a@10=a10 c@30=c30"; got != want {
		t.Fatalf("versions %s, want %s", got, want)
	}
	// Its write below the committed version under its own intent is too
	// old as well.
	err = write(t, e, func(b *Batch) error { return MVCCPut(b, []byte("a"), ts(5), []byte("x"), false, txnA(1)) })
	if !errors.As(err, &wto) || wto.Existing != ts(10) {
		t.Fatalf("owner's write at 5 under a@10 = %v, want WriteTooOld over 10", err)
	}
}

func TestResolveIntent(t *testing.T) {
	for _, c := range []struct {
		name     string
		epoch    int32 // the resolving epoch
		commit   bool
		commitTS int64
		want     string
	}{
		{"commit at the written timestamp", 0, true, 20, "a@20=A a@10=a10 b@20=<del> b@10=b10"},
		{"commit at a pushed timestamp", 0, true, 50, "a@50=A a@10=a10 b@50=<del> b@10=b10"},
		{"abort", 0, false, 0, "a@10=a10 b@10=b10"},
		{"commit of a later epoch drops older intents", 1, true, 50, "a@10=a10 b@10=b10"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newTestEngine(t)
			applyOps(t, e, []op{put("a", 10, "a10"), put("b", 10, "b10")})
			mustWrite(t, e, func(b *Batch) error {
				if err := MVCCPut(b, []byte("a"), ts(20), []byte("A"), false, txnA(0)); err != nil {
					return err
				}
				return MVCCPut(b, []byte("b"), ts(20), nil, true, txnA(0))
			})
			mustWrite(t, e, func(b *Batch) error {
				found, err := MVCCResolveIntent(b, []byte("a"), []byte("A"), c.epoch, c.commit, ts(c.commitTS))
				if err == nil && !found {
					err = fmt.Errorf("intent on a not found")
				}
				return err
			})
			// The rest by span: b's intent, not B's (none) nor c's (no key).
			mustWrite(t, e, func(b *Batch) error {
				n, resume, err := MVCCResolveIntentRange(b, []byte("a"), nil, []byte("A"), c.epoch, c.commit, ts(c.commitTS), 0)
				if err == nil && (n != 1 || resume != nil) {
					err = fmt.Errorf("resolved %d, resume %q; want 1, none", n, resume)
				}
				return err
			})
			if got := dumpAll(t, e); got != c.want {
				t.Fatalf("after resolution: %s, want %s", got, c.want)
			}
			// Resolving again finds nothing and changes nothing.
			mustWrite(t, e, func(b *Batch) error {
				found, err := MVCCResolveIntent(b, []byte("a"), []byte("A"), c.epoch, c.commit, ts(c.commitTS))
				if err == nil && found {
					err = fmt.Errorf("resolved a twice")
				}
				return err
			})
			if got := dumpAll(t, e); got != c.want {
				t.Fatalf("after a second resolution: %s, want %s", got, c.want)
			}
		})
	}

	e := newTestEngine(t)
	mustWrite(t, e, func(b *Batch) error { return MVCCPut(b, []byte("a"), ts(20), []byte("A"), false, txnA(0)) })
	err := write(t, e, func(b *Batch) error {
		_, err := MVCCResolveIntent(b, []byte("a"), []byte("A"), 0, true, ts(19))
		return err
	})
	if !errors.Is(err, ErrIntentInvariant) {
		t.Fatalf("commit below the intent = %v, want ErrIntentInvariant", err)
	}
	// Another transaction's intent is not resolved.
	mustWrite(t, e, func(b *Batch) error {
		found, err := MVCCResolveIntent(b, []byte("a"), []byte("B"), 0, false, Timestamp{})
		if err == nil && found {
			err = fmt.Errorf("B resolved A's intent")
		}
		return err
	})
	if got, want := dumpAll(t, e), "a@20=A(A/0)"; got != want {
		t.Fatalf("versions %s, want %s", got, want)
	}
}

func TestResolveIntentRangeResumes(t *testing.T) {
	e := newTestEngine(t)
	mustWrite(t, e, func(b *Batch) error {
		for _, k := range []string{"a", "b", "c", "d", "e"} {
			if err := MVCCPut(b, []byte(k), ts(20), []byte(k), false, txnA(0)); err != nil {
				return err
			}
		}
		return MVCCPut(b, []byte("bb"), ts(20), []byte("bb"), false, txnB(0))
	})
	start := []byte("a")
	var calls []string
	for start != nil {
		mustWrite(t, e, func(b *Batch) error {
			n, resume, err := MVCCResolveIntentRange(b, start, nil, []byte("A"), 0, true, ts(20), 2)
			calls = append(calls, fmt.Sprintf("%d→%s", n, resume))
			start = resume
			return err
		})
	}
	if got, want := strings.Join(calls, " "), "2→c 2→e 1→"; got != want {
		t.Fatalf("resolution calls %s, want %s", got, want)
	}
	intents, _, err := MVCCFindIntents(e, nil, nil, 0)
	if err != nil || len(intents) != 1 || string(intents[0].Key) != "bb" || string(intents[0].Txn.ID) != "B" {
		t.Fatalf("intents left: %+v, %v; want B's on bb", intents, err)
	}
}

func TestGCAndExportAroundIntents(t *testing.T) {
	e := newTestEngine(t)
	applyOps(t, e, []op{put("a", 5, "a5"), put("a", 10, "a10"), put("b", 10, "b10")})
	mustWrite(t, e, func(b *Batch) error { return MVCCPut(b, []byte("a"), ts(20), []byte("A"), false, txnA(0)) })

	// GC at 30 keeps the intent and a10 (what reads see if A aborts).
	mustWrite(t, e, func(b *Batch) error {
		st, err := MVCCGarbageCollect(b, b, nil, nil, ts(30))
		if err == nil && st.VersionsRemoved != 1 {
			err = fmt.Errorf("GC removed %d versions, want 1", st.VersionsRemoved)
		}
		return err
	})
	if got, want := dumpAll(t, e), "a@20=A(A/0) a@10=a10 b@10=b10"; got != want {
		t.Fatalf("after GC: %s, want %s", got, want)
	}
	st, err := ComputeStats(e, nil, nil)
	if err != nil || st.Intents != 1 || st.Versions != 3 || st.LiveKeys != 2 {
		t.Fatalf("stats %+v, %v; want 1 intent, 3 versions, 2 live keys", st, err)
	}

	// An export at or above the intent fails on it; below, it leaves it out.
	_, _, err = MVCCExport(e, nil, nil, Timestamp{}, ts(25), ExportOptions{})
	if got := intentKeys(t, err); got != "a@20(A)" {
		t.Fatalf("export at 25 conflicts with %s", got)
	}
	out, _, err := MVCCExport(e, nil, nil, Timestamp{}, ts(15), ExportOptions{})
	if err != nil || len(out) != 2 || string(out[0].Value) != "a10" || string(out[1].Value) != "b10" {
		t.Fatalf("export at 15 = %+v, %v", out, err)
	}
}

func TestUncertainty(t *testing.T) {
	e := newTestEngine(t)
	applyOps(t, e, []op{put("a", 10, "a10"), put("a", 20, "a20"), put("b", 10, "b10")})
	mustWrite(t, e, func(b *Batch) error { return MVCCPut(b, []byte("b"), ts(20), []byte("B"), false, txnB(0)) })
	for _, c := range []struct {
		key         string
		read, limit int64
		want        string
	}{
		{"a", 15, 25, "uncertain 20"},
		{"a", 15, 20, "uncertain 20"},
		{"a", 15, 19, "a10"},
		{"a", 15, 0, "a10"},
		{"a", 25, 30, "a20"},
		{"b", 15, 25, "conflict"},
		{"b", 15, 19, "b10"},
	} {
		var got string
		x, _, err := MVCCGetUncertain(e, []byte(c.key), ts(c.read), ts(c.limit), txnA(0))
		var ue *UncertaintyError
		var ie *IntentError
		switch {
		case errors.As(err, &ue):
			got = fmt.Sprintf("uncertain %d", ue.Existing.WallTime)
		case errors.As(err, &ie):
			got = "conflict"
		case err != nil:
			t.Fatal(err)
		default:
			got = string(x.Value)
		}
		if got != c.want {
			t.Errorf("get %s at %d with limit %d = %s, want %s", c.key, c.read, c.limit, got, c.want)
		}
		_, _, err = MVCCScan(e, []byte(c.key), []byte(c.key+"\x00"), ts(c.read), ScanOptions{Txn: txnA(0), Uncertainty: ts(c.limit)})
		if (err != nil) != (c.want == "conflict" || strings.HasPrefix(c.want, "uncertain")) {
			t.Errorf("scan of %s at %d with limit %d: %v, want %s", c.key, c.read, c.limit, err, c.want)
		}
	}
}
