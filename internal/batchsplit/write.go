package batchsplit

import (
	"crypto/rand"
	"fmt"
	"slices"
	"time"

	"github.com/rangestore/rangestore/proto/rspb"
)

// ProposalIDLen is the length of a write's random proposal ID.
const ProposalIDLen = 16

// Write follows one range command of a write across its retries and
// re-splits: its proposal identity (ID and Timestamp), which the range's
// replicas deduplicate on, so that a retry keeping it is answered from the
// dedup record if the command applied; whether some attempt may have
// applied; and the ranges holding its record (it lives under the range the
// command was sent to, and moves with merges into the range that subsumes
// it, not with splits). The methods that record what happened accept a nil
// Write (a read, which applies nothing) and do nothing. A Write is used by
// one goroutine at a time.
type Write struct {
	ID        []byte
	Timestamp *rspb.Timestamp
	// Created is when the identity was made (nodes refuse identities
	// older than their dedup window).
	Created time.Time
	// Ambiguous: some attempt may have applied (a timeout, a transport
	// error, an unfinished proposal).
	Ambiguous bool
	// Holders are the ranges whose replicas find the record: those the
	// command was sent to and those named as having subsumed them.
	Holders []uint64
	// HintTries counts re-sends to a merged-away range, asking its
	// replicas which range subsumed it.
	HintTries int
}

// NewProposalID returns a random proposal ID.
func NewProposalID() []byte {
	b := make([]byte, ProposalIDLen)
	_, _ = rand.Read(b)
	return b
}

// NewWrite returns a Write with a new identity: a random ID and ts (nil:
// none), made at now.
func NewWrite(ts *rspb.Timestamp, now time.Time) *Write {
	w := &Write{}
	w.Renew(ts, now)
	return w
}

// Renew gives the write a new identity (only while nothing may have
// applied: an applied command is found by its old one).
func (w *Write) Renew(ts *rspb.Timestamp, now time.Time) {
	w.ID, w.Timestamp, w.Created = NewProposalID(), ts, now
}

// MayHaveApplied notes an attempt that may have applied.
func (w *Write) MayHaveApplied() {
	if w != nil {
		w.Ambiguous = true
	}
}

// HeldBy notes a range that holds the record (0: none).
func (w *Write) HeldBy(rangeID uint64) {
	if w != nil && rangeID != 0 && !slices.Contains(w.Holders, rangeID) {
		w.Holders = append(w.Holders, rangeID)
	}
}

// SubsumerKnown reports whether a range other than rangeID (one that
// subsumed it) is known to hold the record.
func (w *Write) SubsumerKnown(rangeID uint64) bool {
	for _, id := range w.Holders {
		if id != rangeID {
			return true
		}
	}
	return false
}

// Reuse decides the identity of pieces re-split after a stale route, now
// grouped as groups, that were last sent as one command with identity prev
// (nil: never sent). It returns prev while they are one command to one
// range and prev may go there: nothing may have applied, or the range
// holds its record. It returns nil otherwise (every group gets a new
// identity), with ambiguous set when prev may have applied: the write
// cannot be retried without risking applying it twice, and fails for the
// reason given.
func Reuse[R any](prev *Write, groups []*Group[R]) (reuse *Write, ambiguous string) {
	switch {
	case prev == nil:
		return nil, ""
	case len(groups) == 1 && (!prev.Ambiguous || slices.Contains(prev.Holders, groups[0].RangeID)):
		return prev, ""
	case prev.Ambiguous && len(groups) > 1:
		return nil, fmt.Sprintf("its keys are now in %d ranges", len(groups))
	case prev.Ambiguous && len(groups) == 1:
		return nil, fmt.Sprintf("its keys are now in r%d, which does not hold its record", groups[0].RangeID)
	}
	return nil, ""
}
