package main

import (
	"testing"

	"github.com/rangestore/rangestore/proto/rspb"
)

// TestRangeListShowsFrozen: `range list` marks a range frozen for a merge.
func TestRangeListShowsFrozen(t *testing.T) {
	if got := rangeState(&rspb.RangeInfo{FrozenInto: 999}); got != "frozen->r999" {
		t.Fatalf("frozen range shown as %q", got)
	}
	if got := rangeState(&rspb.RangeInfo{}); got != "ok" {
		t.Fatalf("normal range shown as %q", got)
	}
}
