package kv

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

func TestPebbleLoggerRouting(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e, err := Open("", Options{InMemory: true, Logger: l})
	if err != nil {
		t.Fatal(err)
	}
	pl := pebbleLogger{l: l}
	pl.Infof("hello %d", 1)
	pl.Errorf("oops %s", "x")
	if out := buf.String(); !strings.Contains(out, "hello 1") || !strings.Contains(out, "level=ERROR") {
		t.Errorf("log output = %q", out)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	// A nil logger drops output without panicking, except for Fatalf.
	quiet := pebbleLogger{}
	quiet.Infof("x")
	quiet.Errorf("y")
	func() {
		defer func() {
			if recover() == nil {
				t.Error("Fatalf did not panic")
			}
		}()
		quiet.Fatalf("z")
	}()
}

// TestConcurrentReadWrite exercises the engine from several goroutines
// (meaningful under -race).
func TestConcurrentReadWrite(t *testing.T) {
	e := newTestEngine(t)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 1; i <= 50; i++ {
				b := e.NewBatch()
				key := []byte(fmt.Sprintf("w%d", w))
				newest, _, err := MVCCGetNewestVersion(b, key)
				if err != nil {
					t.Error(err)
				}
				if err := b.PutMVCC(key, newest.Next(), []byte(fmt.Sprint(i))); err != nil {
					t.Error(err)
				}
				if err := b.Commit(false); err != nil {
					t.Error(err)
				}
				b.Close()
				snap := e.NewSnapshot()
				if _, _, err := MVCCScan(snap, nil, nil, MaxTimestamp, ScanOptions{Limit: 3}); err != nil {
					t.Error(err)
				}
				snap.Close()
			}
		}(w)
	}
	wg.Wait()
	st, err := ComputeStats(e, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.LiveKeys != 4 || st.Versions != 200 {
		t.Errorf("stats = %+v", st)
	}
	for w := 0; w < 4; w++ {
		kv, found, err := MVCCGet(e, []byte(fmt.Sprintf("w%d", w)), MaxTimestamp)
		if err != nil || !found || string(kv.Value) != "50" || kv.Timestamp != (Timestamp{Logical: 50}) {
			t.Errorf("w%d = %q@%s %v %v", w, kv.Value, kv.Timestamp, found, err)
		}
	}
}

func TestBatchReprApply(t *testing.T) {
	src, err := Open("", Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := Open("", Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	b := src.NewBatch()
	ts := Timestamp{WallTime: 10}
	if err := b.PutMVCC([]byte("a"), ts, []byte("1")); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteMVCC([]byte("b"), ts); err != nil {
		t.Fatal(err)
	}
	repr := b.Repr()
	_ = b.Close()
	d := dst.NewBatch()
	if err := d.ApplyRepr(repr); err != nil {
		t.Fatal(err)
	}
	if err := d.PutRaw([]byte{LocalPrefix, 'x'}, []byte("y")); err != nil {
		t.Fatal(err)
	}
	if err := d.Commit(false); err != nil {
		t.Fatal(err)
	}
	_ = d.Close()
	got, ok, err := MVCCGet(dst, []byte("a"), MaxTimestamp)
	if err != nil || !ok || string(got.Value) != "1" || got.Timestamp != ts {
		t.Fatalf("applied put: %+v %v %v", got, ok, err)
	}
	if ts2, ok, err := MVCCGetNewestVersion(dst, []byte("b")); err != nil || !ok || ts2 != ts {
		t.Fatalf("applied tombstone: %v %v %v", ts2, ok, err)
	}
	if err := dst.NewBatch().ApplyRepr([]byte{1, 2}); err == nil {
		t.Fatal("garbage repr accepted")
	}
}
