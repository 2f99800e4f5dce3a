package ranges

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rangestore/rangestore/proto/rspb"
)

// TestAdminWaitsForReady: an admin command sent to a replica Dragonboat has
// not opened yet waits for it within the caller's deadline (then a
// retryable UNAVAILABLE), instead of acting on state not loaded yet; once
// the replica is opened, the command runs.
func TestAdminWaitsForReady(t *testing.T) {
	s := newTestStore(t)
	r := s.addFakeReplica(10) // registered, never opened
	probe := &rspb.RangeRequest{RangeId: 10, Admin: &rspb.RangeRequest_AdminFreeze{
		AdminFreeze: &rspb.AdminFreezeRequest{MergeInto: 9, Probe: true}}}

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	resp := s.Send(ctx, probe)
	cancel()
	if e := resp.Error; e.GetCode() != rspb.RangeError_UNAVAILABLE || !strings.Contains(e.GetMessage(), "still starting") {
		t.Fatalf("admin command before the replica opened: got %v, want UNAVAILABLE 'still starting'", e)
	}

	done := make(chan *rspb.RangeResponse, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		done <- s.Send(ctx, probe)
	}()
	r.markReady()
	resp = <-done
	if e := resp.Error; e.GetCode() != rspb.RangeError_UNAVAILABLE || !strings.Contains(e.GetMessage(), "has not applied the freeze yet") {
		t.Fatalf("admin command after the replica opened: got %v, want the probe's answer ('has not applied the freeze yet')", e)
	}
}
