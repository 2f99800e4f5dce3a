package rebalance

import (
	"errors"
	"strings"
	"testing"
)

// TestFactorSetting: the factors accepted and refused, and how a stored
// setting reads (nothing stored: 3, as in clusters from before it).
func TestFactorSetting(t *testing.T) {
	for f := -1; f <= 11; f++ {
		err := ValidateFactor(f)
		if ok := f >= 1 && f <= 9 && f%2 == 1; ok != (err == nil) {
			t.Errorf("ValidateFactor(%d) = %v", f, err)
		}
		if err != nil && !errors.Is(err, ErrBadFactor) {
			t.Errorf("ValidateFactor(%d) = %v, not ErrBadFactor", f, err)
		}
	}
	for _, c := range []struct {
		v     string
		found bool
		want  int
		err   string
	}{
		{"", false, 3, ""},
		{"5", true, 5, ""},
		{"1", true, 1, ""},
		{"4", true, 0, "must be odd"},
		{"x", true, 0, "not a number"},
	} {
		f, err := DecodeFactor([]byte(c.v), c.found)
		if f != c.want || (c.err == "") != (err == nil) || (err != nil && (!strings.Contains(err.Error(), c.err) || !errors.Is(err, ErrBadFactor))) {
			t.Errorf("DecodeFactor(%q, %t) = %d, %v; want %d, %q", c.v, c.found, f, err, c.want, c.err)
		}
	}
	if f, err := DecodeFactor(EncodeFactor(7), true); f != 7 || err != nil {
		t.Errorf("round trip of 7: %d, %v", f, err)
	}
}
