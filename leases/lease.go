package leases

import (
	"time"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/proto/rspb"
)

// State is what a node may do with a lease at a given time.
type State int

const (
	// None: there is no lease (never acquired).
	None State = iota
	// Valid: the holder may serve at the time in question.
	Valid
	// Stasis: within max offset of the expiration; nobody may serve (the
	// holder's clock may be behind another node's that already sees it
	// expired) and nobody may acquire yet.
	Stasis
	// Expired: another replica may acquire (for epoch leases, after
	// incrementing the holder's epoch).
	Expired
	// Unknown: an epoch lease whose holder's liveness record is not known.
	Unknown
)

func (s State) String() string {
	return [...]string{"none", "valid", "stasis", "expired", "unknown"}[s]
}

// IsEpoch reports whether l is an epoch-based lease.
func IsEpoch(l *rspb.Lease) bool { return l.GetEpoch() != 0 }

// ts converts a wire timestamp.
func ts(t *rspb.Timestamp) kv.Timestamp {
	if t == nil {
		return kv.Timestamp{}
	}
	return kv.Timestamp{WallTime: t.WallTime, Logical: t.Logical}
}

// Expiration returns when l stops being valid: its own expiration for an
// expiration lease, the holder's liveness expiration for an epoch lease
// (empty if the record does not match the lease's epoch).
func Expiration(l *rspb.Lease, holder *rspb.Liveness) kv.Timestamp {
	if !IsEpoch(l) {
		return ts(l.GetExpiration())
	}
	if holder == nil || holder.Epoch != l.Epoch {
		return kv.Timestamp{}
	}
	return ts(holder.Expiration)
}

// Status judges lease l at time now. holder is the holder's liveness record
// (needed for epoch leases only). An epoch lease is expired once the
// holder's epoch has moved past it, or once its record has expired.
func Status(l *rspb.Lease, now kv.Timestamp, holder *rspb.Liveness, maxOffset time.Duration) State {
	if l == nil || l.Sequence == 0 {
		return None
	}
	if IsEpoch(l) {
		if holder == nil {
			return Unknown
		}
		if holder.Epoch > l.Epoch {
			return Expired
		}
		if holder.Epoch < l.Epoch {
			return Unknown // our copy of the record is older than the lease
		}
	}
	exp := Expiration(l, holder)
	stasis := kv.Timestamp{WallTime: exp.WallTime - int64(maxOffset), Logical: exp.Logical}
	switch {
	case now.Less(stasis):
		return Valid
	case now.Less(exp):
		return Stasis
	}
	return Expired
}
