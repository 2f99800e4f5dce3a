package backup

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/rangestore/rangestore/internal/golden"
)

// TestManifestValidation replays testdata/manifest_validation.json (keys
// base64, as the manifest stores them) through Manifest.Validate and
// compares the verdicts with testdata/manifest_validation.golden
// (-rewrite).
func TestManifestValidation(t *testing.T) {
	var cases struct {
		Cases []struct {
			Name     string
			Manifest json.RawMessage
		}
	}
	golden.LoadJSON(t, "manifest_validation.json", &cases)
	var out strings.Builder
	for _, c := range cases.Cases {
		m := &Manifest{}
		if err := json.Unmarshal(c.Manifest, m); err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		verdict := "ok"
		if err := m.Validate(); err != nil {
			verdict = "invalid: " + err.Error()
		}
		fmt.Fprintf(&out, "== %s\n%s\n", c.Name, verdict)
	}
	golden.Check(t, "manifest_validation.golden", []byte(out.String()))
}

// TestCheckIncrementalBase: the base must be older and of the same span.
func TestCheckIncrementalBase(t *testing.T) {
	base := &Manifest{Timestamp: Timestamp{WallTime: 100}}
	for _, c := range []struct {
		ts   Timestamp
		end  []byte
		want string
	}{
		{Timestamp{WallTime: 101}, nil, ""},
		{Timestamp{WallTime: 100, Logical: 1}, nil, ""},
		{Timestamp{WallTime: 100}, nil, "is not below"},
		{Timestamp{WallTime: 50}, nil, "is not below"},
		{Timestamp{WallTime: 200}, []byte("m"), "holds span"},
	} {
		err := CheckIncrementalBase(base, c.ts, nil, c.end)
		if (c.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), c.want) {
			t.Errorf("base at 100, new at %s, end %q: %v, want %q", c.ts, c.end, err, c.want)
		}
	}
}

// TestParseTimestamp: the CLI's printed form, with or without @ and the
// logical part, and wall nanoseconds; anything else is refused.
func TestParseTimestamp(t *testing.T) {
	for in, want := range map[string]Timestamp{
		"@1700000000.000000123,4": {WallTime: 1700000000000000123, Logical: 4},
		"1700000000.000000123,4":  {WallTime: 1700000000000000123, Logical: 4},
		"1700000000.5":            {WallTime: 1700000000500000000},
		"1700000000000000123":     {WallTime: 1700000000000000123},
	} {
		got, err := ParseTimestamp(in)
		if err != nil || got != want {
			t.Errorf("ParseTimestamp(%q) = %v, %v; want %v", in, got, err, want)
		}
		if in[0] == '@' && got.String() != in {
			t.Errorf("%q prints as %q", in, got.String())
		}
	}
	for _, in := range []string{"", "@", "0", "-5", "1.", "1.1234567890", "1,x", "1,-1", "yesterday", "99999999999999999999"} {
		if ts, err := ParseTimestamp(in); err == nil {
			t.Errorf("ParseTimestamp(%q) = %v, want an error", in, ts)
		}
	}
}
