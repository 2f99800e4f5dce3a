package kv

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzMVCCValue checks the decoding of stored MVCC values, alone and
// through every read that decodes them. The key "k" holds two versions
// with arbitrary value bytes (older at 100, newest at 200) between two
// well-formed keys "j" and "l"; the versions are written into an
// uncommitted batch over an in-memory engine, so each input starts from
// the same state. Properties:
//   - decodeValue never panics: it returns an error saying the value is
//     malformed, or a tombstone or payload that encodes back to exactly
//     the input bytes;
//   - MVCCGet, MVCCScan (both directions), ComputeStats, MVCCExport (full
//     and incremental) and MVCCGarbageCollect fail with that error exactly
//     when the version they must decode is malformed, and otherwise return
//     what the decoded value says.
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
		type decoded struct {
			payload   []byte
			tombstone bool
			err       error
		}
		dec := func(raw []byte) decoded {
			p, tomb, err := decodeValue(raw)
			switch {
			case err != nil && !strings.Contains(err.Error(), "malformed MVCC value"):
				t.Fatalf("decodeValue(%x): error %q does not say the value is malformed", raw, err)
			case err == nil && tomb && !bytes.Equal(raw, tombstoneValue):
				t.Fatalf("decodeValue(%x) = tombstone, which encodes as %x", raw, tombstoneValue)
			case err == nil && !tomb && !bytes.Equal(encodeValue(p), raw):
				t.Fatalf("decodeValue(%x) = payload %x, which encodes as %x", raw, p, encodeValue(p))
			}
			return decoded{p, tomb, err}
		}
		dOld, dNew := dec(rawOlder), dec(rawNewest)

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
		// wantErr checks that a read failed iff the version it decodes is
		// malformed, with an error that says so.
		wantErr := func(what string, d decoded, err error) bool {
			t.Helper()
			if (err != nil) != (d.err != nil) {
				t.Fatalf("%s: error %v, but the value it decodes gives %v", what, err, d.err)
			}
			if err != nil && !strings.Contains(err.Error(), "malformed MVCC value") {
				t.Fatalf("%s: error %q does not say the value is malformed", what, err)
			}
			return err != nil
		}

		for _, rd := range []struct {
			ts Timestamp
			d  decoded
		}{{Timestamp{WallTime: 150}, dOld}, {Timestamp{WallTime: 300}, dNew}} {
			kv, found, err := MVCCGet(b, []byte("k"), rd.ts)
			if !wantErr("MVCCGet at "+rd.ts.String(), rd.d, err) {
				if found == rd.d.tombstone || (found && !bytes.Equal(kv.Value, rd.d.payload)) {
					t.Fatalf("MVCCGet at %s = %x, found %v; the version decodes to %x, tombstone %v", rd.ts, kv.Value, found, rd.d.payload, rd.d.tombstone)
				}
			}
			want := "j=vj "
			if !rd.d.tombstone {
				want += "k=" + string(rd.d.payload) + " "
			}
			if rd.ts == (Timestamp{WallTime: 300}) {
				want += "l=vl "
			}
			for _, reverse := range []bool{false, true} {
				kvs, resume, err := MVCCScan(b, []byte("a"), []byte("z"), rd.ts, ScanOptions{Reverse: reverse})
				if wantErr("MVCCScan at "+rd.ts.String(), rd.d, err) {
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
					t.Fatalf("MVCCScan at %s (reverse %v) = %q, resume %q; want %q", rd.ts, reverse, got.String(), resume, want)
				}
			}
		}

		stats, err := ComputeStats(b, nil, nil)
		if !wantErr("ComputeStats", dNew, err) {
			live := int64(2)
			if !dNew.tombstone {
				live++
			}
			if stats.LiveKeys != live || stats.Versions != 4 {
				t.Fatalf("ComputeStats = %+v, want %d live keys of 4 versions", stats, live)
			}
		}

		for _, since := range []Timestamp{{}, {WallTime: 150}} {
			out, _, err := MVCCExport(b, nil, nil, since, Timestamp{WallTime: 300}, ExportOptions{})
			if wantErr("MVCCExport since "+since.String(), dNew, err) {
				continue
			}
			var k *ExportedKV
			for i := range out {
				if string(out[i].Key) == "k" {
					k = &out[i]
				}
			}
			switch {
			case since.IsEmpty() && dNew.tombstone && k != nil:
				t.Fatalf("full export returned the deleted key k: %+v", *k)
			case (!since.IsEmpty() || !dNew.tombstone) && (k == nil || k.Deleted != dNew.tombstone || !bytes.Equal(k.Value, dNew.payload)):
				t.Fatalf("export since %s: k = %+v; the newest version decodes to %x, tombstone %v", since, k, dNew.payload, dNew.tombstone)
			}
		}

		// GC at 250 decodes k's newest version (the one it may keep) and
		// removes the older one, and the newest too if it is a tombstone.
		gc, err := MVCCGarbageCollect(b, b, nil, nil, Timestamp{WallTime: 250})
		if !wantErr("MVCCGarbageCollect", dNew, err) {
			removed := int64(1)
			if dNew.tombstone {
				removed++
			}
			if gc.VersionsRemoved != removed || gc.KeysScanned != 3 {
				t.Fatalf("MVCCGarbageCollect = %+v, want %d versions removed of 3 keys", gc, removed)
			}
		}
	})
}
