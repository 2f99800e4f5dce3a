package kv

import (
	"math"
	"testing"
)

func TestTimestampOrdering(t *testing.T) {
	tests := []struct {
		a, b         Timestamp
		less, lessEq bool
	}{
		{Timestamp{}, Timestamp{}, false, true},
		{Timestamp{}, Timestamp{Logical: 1}, true, true},
		{Timestamp{1, 0}, Timestamp{0, 5}, false, false},
		{Timestamp{1, 5}, Timestamp{2, 0}, true, true},
		{Timestamp{2, 3}, Timestamp{2, 3}, false, true},
		{Timestamp{2, 4}, Timestamp{2, 3}, false, false},
		{Timestamp{5, 0}, MaxTimestamp, true, true},
	}
	for _, tc := range tests {
		if got := tc.a.Less(tc.b); got != tc.less {
			t.Errorf("%s.Less(%s) = %v, want %v", tc.a, tc.b, got, tc.less)
		}
		if got := tc.a.LessEq(tc.b); got != tc.lessEq {
			t.Errorf("%s.LessEq(%s) = %v, want %v", tc.a, tc.b, got, tc.lessEq)
		}
		wantCmp := 0
		if tc.less {
			wantCmp = -1
		} else if !tc.lessEq {
			wantCmp = 1
		}
		if got := tc.a.Compare(tc.b); got != wantCmp {
			t.Errorf("%s.Compare(%s) = %d, want %d", tc.a, tc.b, got, wantCmp)
		}
	}
	if !(Timestamp{}).IsEmpty() || (Timestamp{Logical: 1}).IsEmpty() || (Timestamp{WallTime: 1}).IsEmpty() {
		t.Error("IsEmpty wrong")
	}
}

func TestTimestampNextPrev(t *testing.T) {
	tests := []struct {
		ts, next Timestamp
	}{
		{Timestamp{}, Timestamp{0, 1}},
		{Timestamp{10, 0}, Timestamp{10, 1}},
		{Timestamp{10, 7}, Timestamp{10, 8}},
		{Timestamp{10, math.MaxInt32}, Timestamp{11, 0}},
	}
	for _, tc := range tests {
		if got := tc.ts.Next(); got != tc.next {
			t.Errorf("%s.Next() = %s, want %s", tc.ts, got, tc.next)
		}
		if got := tc.next.Prev(); got != tc.ts {
			t.Errorf("%s.Prev() = %s, want %s", tc.next, got, tc.ts)
		}
		if !tc.ts.Less(tc.ts.Next()) {
			t.Errorf("%s not < Next", tc.ts)
		}
	}
	if got := MaxTimestamp.Next(); got != MaxTimestamp {
		t.Errorf("MaxTimestamp.Next() = %s", got)
	}
	if got := MaxTimestamp.Prev(); got != (Timestamp{math.MaxInt64, math.MaxInt32 - 1}) {
		t.Errorf("MaxTimestamp.Prev() = %s", got)
	}
}

func TestTimestampString(t *testing.T) {
	tests := []struct {
		ts   Timestamp
		want string
	}{
		{Timestamp{}, "0.000000000,0"},
		{Timestamp{1700000000000000123, 4}, "1700000000.000000123,4"},
		{Timestamp{1, 0}, "0.000000001,0"},
		{Timestamp{2500000000, 17}, "2.500000000,17"},
	}
	for _, tc := range tests {
		if got := tc.ts.String(); got != tc.want {
			t.Errorf("String(%#v) = %q, want %q", tc.ts, got, tc.want)
		}
	}
}
