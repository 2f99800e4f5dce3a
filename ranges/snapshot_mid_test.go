package ranges

import (
	"bytes"
	"fmt"
	"math/rand"
	"testing"
	"time"

	"github.com/rangestore/rangestore/proto/rspb"
)

// TestSnapshotMidStreamHooks: the crash points inside a snapshot stream
// (snapshot-send-mid, snapshot-receive-mid) fire once per snapshot, after
// snapshotMidBytes and before the end of a longer snapshot, and never for
// a shorter one. A recovery cut there (the hook panics: an in-process
// stand-in for the SIGKILL) leaves the replica's old state and applied
// index, and the same snapshot applies in full afterwards.
func TestSnapshotMidStreamHooks(t *testing.T) {
	src := smtNew(t)
	rng := rand.New(rand.NewSource(7))
	val := make([]byte, 64<<10)
	for b := 0; b < 12; b++ { // 96 keys of 64 KiB of random bytes: 6 MiB
		reqs := make([]*rspb.RequestUnion, 0, 8)
		for j := 0; j < 8; j++ {
			rng.Read(val)
			reqs = append(reqs, smtPut(fmt.Sprintf("ub%03d", b*8+j), string(val)))
		}
		src.write(smtTS(time.Duration(b)*time.Second, 0), reqs...)
	}
	var buf bytes.Buffer
	sends, sentAt := 0, 0
	src.sm.midSend = func() { sends++; sentAt = buf.Len() }
	ctx, err := src.sm.PrepareSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := src.sm.SaveSnapshot(ctx, &buf, make(chan struct{})); err != nil {
		t.Fatal(err)
	}
	if sends != 1 || sentAt < snapshotMidBytes || sentAt >= buf.Len() {
		t.Fatalf("snapshot-send-mid: %d calls, at %d bytes of %d; want one, at %d bytes or more, before the end", sends, sentAt, buf.Len(), snapshotMidBytes)
	}
	t.Logf("snapshot of %d bytes: snapshot-send-mid after %d", buf.Len(), sentAt)

	// The receiver: replica 2 with one key of its own.
	dstEng := smtOpenEngine(t)
	smtWriteDesc(t, dstEng, smtDesc())
	dst := smtOpen(t, dstEng, 2)
	dst.write(smtTS(time.Hour, 0), smtPut("uk", "old"))
	oldApplied := dst.sm.applied.Load()
	type crash struct{}
	recovers := 0
	dst.sm.midRecover = func() { recovers++; panic(crash{}) }
	func() {
		defer func() {
			if r := recover(); r != (crash{}) {
				t.Fatalf("RecoverFromSnapshot did not reach snapshot-receive-mid (recovered %v)", r)
			}
		}()
		_ = dst.sm.RecoverFromSnapshot(bytes.NewReader(buf.Bytes()), make(chan struct{}))
	}()
	if v, _ := dst.get("uk"); v != "old" {
		t.Fatalf("a recovery cut mid-stream changed data: uk = %q", v)
	}
	if v, ok := dst.get("ub000"); ok {
		t.Fatalf("a recovery cut mid-stream left snapshot data visible: ub000 = %d bytes", len(v))
	}
	if idx, err := newStateMachine(dstEng, smtRangeID, 2, nil).Open(nil); err != nil || idx != oldApplied {
		t.Fatalf("Open after a recovery cut mid-stream = %d, %v; want the old %d", idx, err, oldApplied)
	}
	// Applied again (the hook now only counts): in full.
	dst.sm.midRecover = func() { recovers++ }
	if err := dst.sm.RecoverFromSnapshot(bytes.NewReader(buf.Bytes()), make(chan struct{})); err != nil {
		t.Fatal(err)
	}
	if recovers != 2 {
		t.Fatalf("snapshot-receive-mid fired %d times over two recoveries, want once each", recovers)
	}
	if got, want := smtRawData(t, dstEng, smtStart, smtEnd), smtRawData(t, src.eng, smtStart, smtEnd); !smtEqual(got, want) {
		t.Fatalf("data after the second recovery: %d versions, the source has %d", len(got), len(want))
	}
	if got := dst.sm.applied.Load(); got != src.index {
		t.Fatalf("applied after the second recovery %d, want %d", got, src.index)
	}

	// A snapshot shorter than snapshotMidBytes reaches neither point.
	small := smtNew(t)
	small.write(smtTS(0, 0), smtPut("ub", "b"))
	small.sm.midSend = func() { t.Fatal("snapshot-send-mid in a short snapshot") }
	ctx, err = small.sm.PrepareSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	buf.Reset()
	if err := small.sm.SaveSnapshot(ctx, &buf, make(chan struct{})); err != nil {
		t.Fatal(err)
	}
	dst.sm.midRecover = func() { t.Fatal("snapshot-receive-mid in a short snapshot") }
	if err := dst.sm.RecoverFromSnapshot(bytes.NewReader(buf.Bytes()), make(chan struct{})); err != nil {
		t.Fatal(err)
	}
}
