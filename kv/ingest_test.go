package kv

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func putRaws(t *testing.T, e *Engine, kvs ...string) {
	t.Helper()
	b := e.NewBatch()
	defer b.Close()
	for i := 0; i < len(kvs); i += 2 {
		if err := b.PutRaw([]byte(kvs[i]), []byte(kvs[i+1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
}

// rawDump lists every key=value of r in [lower, upper).
func rawDump(t *testing.T, r Reader, lower, upper string) string {
	t.Helper()
	it, err := r.NewIter([]byte(lower), []byte(upper))
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	out := ""
	for ok := it.First(); ok; ok = it.Next() {
		out += fmt.Sprintf("%s=%s ", it.Key(), it.Value())
	}
	return out
}

// TestReplacementIngest: the spans' old keys are gone and the new ones
// present at once; keys outside the spans are untouched; a snapshot taken
// before the ingestion keeps seeing the old state; the build files are
// removed.
func TestReplacementIngest(t *testing.T) {
	e := newTestEngine(t)
	putRaws(t, e, "a1", "old", "b1", "old", "b5", "old", "c1", "keep", "d1", "old", "z", "keep")
	before := e.NewSnapshot()
	defer before.Close()
	// [b, c) and [b3, b9) merge; [d, e) is separate; "x0" is a point span.
	r, err := e.NewReplacement(Span{[]byte("d"), []byte("e")}, Span{[]byte("b"), []byte("c")},
		Span{[]byte("b3"), []byte("b9")}, Span{[]byte("x0"), []byte("x0\x00")})
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range [][2]string{{"b2", "new"}, {"b7", "new"}, {"d2", "new"}, {"x0", "new"}} {
		if err := r.Set([]byte(kv[0]), []byte(kv[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Set([]byte("c5"), []byte("x")); !errors.Is(err, ErrInvalidSpan) {
		t.Fatalf("Set outside the spans: %v, want ErrInvalidSpan", err)
	}
	if got, want := rawDump(t, e, "a", "zz"), "a1=old b1=old b5=old c1=keep d1=old z=keep "; got != want {
		t.Fatalf("before ingest: %q, want %q", got, want)
	}
	if err := r.Ingest(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := rawDump(t, e, "a", "zz"), "a1=old b2=new b7=new c1=keep d2=new x0=new z=keep "; got != want {
		t.Fatalf("after ingest: %q, want %q", got, want)
	}
	if got, want := rawDump(t, before, "a", "zz"), "a1=old b1=old b5=old c1=keep d1=old z=keep "; got != want {
		t.Fatalf("snapshot from before: %q, want %q", got, want)
	}
	if names, err := e.fs.List(e.ingestDir()); err != nil || len(names) != 0 {
		t.Fatalf("ingest dir after ingest: %v %v", names, err)
	}
}

// replaceB writes b1=old to e and starts a replacement of [b, c) holding
// b2=new.
func replaceB(t *testing.T, e *Engine) *Replacement {
	t.Helper()
	putRaws(t, e, "b1", "old")
	r, err := e.NewReplacement(Span{[]byte("b"), []byte("c")})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Set([]byte("b2"), []byte("new")); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestReplacementAbort: an aborted replacement changes nothing and leaves
// no files; a bad span is refused.
func TestReplacementAbort(t *testing.T) {
	e := newTestEngine(t)
	r := replaceB(t, e)
	r.Abort()
	if got, want := rawDump(t, e, "a", "z"), "b1=old "; got != want {
		t.Fatalf("after abort: %q, want %q", got, want)
	}
	if names, err := e.fs.List(e.ingestDir()); err != nil || len(names) != 0 {
		t.Fatalf("ingest dir after abort: %v %v", names, err)
	}
	if _, err := e.NewReplacement(Span{[]byte("c"), []byte("b")}); !errors.Is(err, ErrInvalidSpan) {
		t.Fatalf("reversed span: %v, want ErrInvalidSpan", err)
	}
}

// TestReplacementCrashLeftovers: files of a replacement that was never
// ingested (a crash while building it) change nothing and are removed when
// the engine opens again.
func TestReplacementCrashLeftovers(t *testing.T) {
	dir := t.TempDir()
	e, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := replaceB(t, e)
	// Finish the file as a crash just before the ingestion would leave it.
	if err := r.ws[0].Close(); err != nil {
		t.Fatal(err)
	}
	r.ws[0], r.done = nil, true
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if got, want := rawDump(t, e, "a", "z"), "b1=old "; got != want {
		t.Fatalf("after reopen: %q, want %q", got, want)
	}
	if _, err := e.fs.Stat(e.ingestDir()); err == nil {
		t.Fatalf("ingest dir %s still exists after reopen", e.ingestDir())
	}
}
