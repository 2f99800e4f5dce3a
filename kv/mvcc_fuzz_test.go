package kv

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// FuzzMVCCValue checks the decoding of stored MVCC values, alone and
// through every read that decodes them. The key "k" holds two versions
// with arbitrary value bytes (older at 100, newest at 200) between two
// well-formed keys "j" and "l"; the versions are written into an
// uncommitted batch over an in-memory engine, so each input starts from
// the same state. Properties:
//   - decodeVersionValue never panics: it returns an error saying the
//     value is malformed, or a committed value that encodes back to exactly
//     the input bytes, or an intent whose fields survive re-encoding;
//   - MVCCGet, MVCCScan (both directions), ComputeStats, MVCCExport (full
//     and incremental) and MVCCGarbageCollect return what a model of the
//     read says: every read decodes k's newest version (to see whether it
//     is an intent) and the older one when it reads beneath it; a malformed
//     version it decodes fails it with that error, an intent at or below
//     the read timestamp is an *IntentError, an intent below a newer
//     version breaks the invariant (ErrIntentInvariant), and otherwise the
//     read returns what the decoded version says.
func FuzzMVCCValue(f *testing.F) {
	eng, err := Open("", Options{InMemory: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		if err := eng.Close(); err != nil {
			f.Error(err)
		}
	})
	older, newest := Timestamp{WallTime: 100}, Timestamp{WallTime: 200}
	f.Fuzz(func(t *testing.T, rawOlder, rawNewest []byte) {
		type version struct {
			d   decoded
			err error
			ts  Timestamp
		}
		dec := func(raw []byte, ts Timestamp) version {
			d, err := decodeVersionValue(raw)
			switch {
			case err != nil && !strings.Contains(err.Error(), "malformed MVCC value"):
				t.Fatalf("decodeVersionValue(%x): error %q does not say the value is malformed", raw, err)
			case err == nil && !d.intent && d.tombstone && !bytes.Equal(raw, tombstoneValue):
				t.Fatalf("decodeVersionValue(%x) = tombstone, which encodes as %x", raw, tombstoneValue)
			case err == nil && !d.intent && !d.tombstone && !bytes.Equal(encodeValue(d.payload), raw):
				t.Fatalf("decodeVersionValue(%x) = payload %x, which encodes as %x", raw, d.payload, encodeValue(d.payload))
			case err == nil && d.intent:
				re := encodeIntentValue(&IntentTxn{ID: d.txnID, Epoch: d.epoch, Meta: d.meta}, d.payload, d.tombstone)
				d2, err2 := decodeVersionValue(re)
				if err2 != nil || !d2.intent || d2.tombstone != d.tombstone || d2.epoch != d.epoch ||
					!bytes.Equal(d2.txnID, d.txnID) || !bytes.Equal(d2.meta, d.meta) || !bytes.Equal(d2.payload, d.payload) {
					t.Fatalf("intent %x decodes to %+v, which re-encodes as %x and decodes to %+v, %v", raw, d, re, d2, err2)
				}
			}
			return version{d, err, ts}
		}
		vOld, vNew := dec(rawOlder, older), dec(rawNewest, newest)

		// expect is the model of a non-transactional read of k at readTS:
		// the version it returns, or the error it fails with.
		type outcome struct {
			v        version // the version read (if found or a tombstone)
			err      error   // a malformed version's decoding error
			conflict bool
			broken   bool // ErrIntentInvariant
		}
		expect := func(readTS Timestamp) outcome {
			if vNew.err != nil {
				return outcome{err: vNew.err}
			}
			if newest.LessEq(readTS) {
				if vNew.d.intent {
					return outcome{conflict: true}
				}
				return outcome{v: vNew}
			}
			if vOld.err != nil {
				return outcome{err: vOld.err}
			}
			if vOld.d.intent {
				return outcome{broken: true}
			}
			return outcome{v: vOld}
		}
		// check compares a read's error with the model's and reports
		// whether the read failed.
		check := func(what string, o outcome, err error) bool {
			t.Helper()
			var ie *IntentError
			switch {
			case o.err != nil && (err == nil || !strings.Contains(err.Error(), "malformed MVCC value")):
				t.Fatalf("%s: error %v, but the version it decodes gives %v", what, err, o.err)
			case o.conflict && !errors.As(err, &ie):
				t.Fatalf("%s: error %v, want an *IntentError", what, err)
			case o.conflict && (len(ie.Intents) != 1 || string(ie.Intents[0].Key) != "k" || ie.Intents[0].Timestamp != newest):
				t.Fatalf("%s: %v lists the wrong intents", what, err)
			case o.broken && !errors.Is(err, ErrIntentInvariant):
				t.Fatalf("%s: error %v, want ErrIntentInvariant", what, err)
			case o.err == nil && !o.conflict && !o.broken && err != nil:
				t.Fatalf("%s: unexpected error %v", what, err)
			}
			return err != nil
		}

		b := eng.NewBatch()
		defer func() { _ = b.Close() }()
		for _, w := range []struct {
			key []byte
			ts  Timestamp
			val []byte
		}{
			{[]byte("j"), older, encodeValue([]byte("vj"))},
			{[]byte("k"), older, rawOlder},
			{[]byte("k"), newest, rawNewest},
			{[]byte("l"), newest, encodeValue([]byte("vl"))},
		} {
			if err := b.PutRaw(EncodeMVCCKey(w.key, w.ts), w.val); err != nil {
				t.Fatal(err)
			}
		}

		for _, readTS := range []Timestamp{{WallTime: 150}, {WallTime: 300}} {
			o := expect(readTS)
			kv, found, err := MVCCGet(b, []byte("k"), readTS)
			if !check("MVCCGet at "+readTS.String(), o, err) {
				if found == o.v.d.tombstone || (found && (!bytes.Equal(kv.Value, o.v.d.payload) || kv.Timestamp != o.v.ts)) {
					t.Fatalf("MVCCGet at %s = %x@%s, found %v; the version decodes to %x@%s, tombstone %v",
						readTS, kv.Value, kv.Timestamp, found, o.v.d.payload, o.v.ts, o.v.d.tombstone)
				}
			}
			want := "j=vj "
			if !o.v.d.tombstone {
				want += "k=" + string(o.v.d.payload) + " "
			}
			if readTS == (Timestamp{WallTime: 300}) {
				want += "l=vl "
			}
			for _, reverse := range []bool{false, true} {
				kvs, resume, err := MVCCScan(b, []byte("a"), []byte("z"), readTS, ScanOptions{Reverse: reverse})
				if check(fmt.Sprintf("MVCCScan at %s (reverse %v)", readTS, reverse), o, err) {
					continue
				}
				var got strings.Builder
				for i := range kvs {
					x := kvs[i]
					if reverse {
						x = kvs[len(kvs)-1-i]
					}
					got.WriteString(string(x.Key) + "=" + string(x.Value) + " ")
				}
				if got.String() != want || resume != nil {
					t.Fatalf("MVCCScan at %s (reverse %v) = %q, resume %q; want %q", readTS, reverse, got.String(), resume, want)
				}
			}
		}

		stats, err := ComputeStats(b, nil, nil)
		if !check("ComputeStats", outcome{err: vNew.err}, err) {
			live, intents := int64(2), int64(0)
			if !vNew.d.tombstone {
				live++
			}
			if vNew.d.intent {
				intents++
			}
			if stats.LiveKeys != live || stats.Versions != 4 || stats.Intents != intents {
				t.Fatalf("ComputeStats = %+v, want %d live keys of 4 versions, %d intents", stats, live, intents)
			}
		}

		o := expect(Timestamp{WallTime: 300})
		for _, since := range []Timestamp{{}, {WallTime: 150}} {
			out, _, err := MVCCExport(b, nil, nil, since, Timestamp{WallTime: 300}, ExportOptions{})
			if check("MVCCExport since "+since.String(), o, err) {
				continue
			}
			var k *ExportedKV
			for i := range out {
				if string(out[i].Key) == "k" {
					k = &out[i]
				}
			}
			switch {
			case since.IsEmpty() && vNew.d.tombstone && k != nil:
				t.Fatalf("full export returned the deleted key k: %+v", *k)
			case (!since.IsEmpty() || !vNew.d.tombstone) && (k == nil || k.Deleted != vNew.d.tombstone || !bytes.Equal(k.Value, vNew.d.payload)):
				t.Fatalf("export since %s: k = %+v; the newest version decodes to %x, tombstone %v", since, k, vNew.d.payload, vNew.d.tombstone)
			}
		}

		// GC at 250 decodes k's newest version. If it is committed, GC
		// keeps it (removes it too if it is a tombstone) and removes the
		// older one. If it is an intent, GC keeps it and decodes the older
		// version, the one a read would see if the intent were aborted:
		// kept, unless it is a tombstone.
		gcWant := outcome{err: vNew.err}
		removed := int64(1)
		switch {
		case vNew.err != nil:
		case !vNew.d.intent && vNew.d.tombstone:
			removed = 2
		case vNew.d.intent:
			gcWant.err = vOld.err
			removed = 0
			if vOld.err == nil && !vOld.d.intent && vOld.d.tombstone {
				removed = 1
			}
		}
		gc, err := MVCCGarbageCollect(b, b, nil, nil, Timestamp{WallTime: 250})
		if !check("MVCCGarbageCollect", gcWant, err) {
			if gc.VersionsRemoved != removed || gc.KeysScanned != 3 {
				t.Fatalf("MVCCGarbageCollect = %+v, want %d versions removed of 3 keys", gc, removed)
			}
		}
	})
}
