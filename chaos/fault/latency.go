package fault

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// MaxRTT bounds a latency table's round-trip times: a longer one is
// almost certainly a typo (say 70s for 70ms) and would stall every range
// that spans the link.
const MaxRTT = 10 * time.Second

// GlobalLatencies is the table `demo --global` injects: round-trip times
// between three regions (in the order of a real deployment's, roughly), and
// none inside a region.
const GlobalLatencies = "us-east/eu-west=70ms,us-east/ap-south=180ms,eu-west/ap-south=120ms"

// LatencyTable holds simulated round-trip times between regions: one per
// unordered pair of distinct regions, and one ("local") inside any region.
// It is a value with no I/O: the transports in this package look it up for
// each message and delay it by half the round trip (OneWay).
type LatencyTable struct {
	rtt   map[[2]string]time.Duration // sorted pair -> round trip
	local time.Duration
}

// ParseLatencyTable parses a comma-separated list of entries
// "REGION/REGION=DURATION" (a round trip between two regions, either
// order) and optionally "local=DURATION" (the round trip inside a region,
// 0 if absent), e.g. GlobalLatencies. Region names are letters, digits,
// '-', '_' and '.'. A pair given twice (in either order), a region paired
// with itself, a negative duration or one above MaxRTT is refused, naming
// the entry.
func ParseLatencyTable(s string) (*LatencyTable, error) {
	t := &LatencyTable{rtt: map[[2]string]time.Duration{}}
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("latency table: empty (want REGION/REGION=DURATION,...)")
	}
	sawLocal := false
	for _, entry := range strings.Split(s, ",") {
		entry = strings.TrimSpace(entry)
		key, val, ok := strings.Cut(entry, "=")
		if !ok {
			return nil, fmt.Errorf("latency table: entry %q is not REGION/REGION=DURATION or local=DURATION", entry)
		}
		d, err := time.ParseDuration(strings.TrimSpace(val))
		if err != nil {
			return nil, fmt.Errorf("latency table: entry %q: %w", entry, err)
		}
		if d < 0 || d > MaxRTT {
			return nil, fmt.Errorf("latency table: entry %q: round trip %s is outside [0, %s]", entry, d, MaxRTT)
		}
		key = strings.TrimSpace(key)
		if key == "local" {
			if sawLocal {
				return nil, fmt.Errorf("latency table: entry %q: local given twice", entry)
			}
			sawLocal, t.local = true, d
			continue
		}
		a, b, ok := strings.Cut(key, "/")
		if !ok {
			return nil, fmt.Errorf("latency table: entry %q is not REGION/REGION=DURATION or local=DURATION", entry)
		}
		a, b = strings.TrimSpace(a), strings.TrimSpace(b)
		for _, r := range []string{a, b} {
			if err := checkRegionName(r); err != nil {
				return nil, fmt.Errorf("latency table: entry %q: %w", entry, err)
			}
		}
		if a == b {
			return nil, fmt.Errorf("latency table: entry %q pairs region %s with itself (use local=DURATION)", entry, a)
		}
		p := pair(a, b)
		if _, dup := t.rtt[p]; dup {
			return nil, fmt.Errorf("latency table: entry %q: pair %s/%s given twice", entry, p[0], p[1])
		}
		t.rtt[p] = d
	}
	return t, nil
}

func checkRegionName(r string) error {
	if r == "" {
		return errors.New("empty region name")
	}
	for _, c := range r {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("region %q: %q is not a letter, digit, '-', '_' or '.'", r, c)
		}
	}
	return nil
}

func pair(a, b string) [2]string {
	if b < a {
		a, b = b, a
	}
	return [2]string{a, b}
}

// Check reports an error naming the first of the given regions the table
// does not name, or the first pair of them it has no round trip for: a
// cluster whose regions it does not cover would otherwise run some links
// undelayed.
func (t *LatencyTable) Check(regions []string) error {
	rs := append([]string(nil), regions...)
	sort.Strings(rs)
	named := map[string]bool{}
	for p := range t.rtt {
		named[p[0]], named[p[1]] = true, true
	}
	for _, r := range rs {
		if !named[r] {
			return fmt.Errorf("latency table does not name region %s (it covers %s)", r, t)
		}
	}
	for i, a := range rs {
		for _, b := range rs[i+1:] {
			if a == b {
				continue
			}
			if _, ok := t.rtt[pair(a, b)]; !ok {
				return fmt.Errorf("latency table has no round trip for %s/%s (it covers %s)", a, b, t)
			}
		}
	}
	return nil
}

// RTT is the round trip between two regions: local when they are the
// same, and ok=false for a pair the table does not list.
func (t *LatencyTable) RTT(a, b string) (d time.Duration, ok bool) {
	if a == b {
		return t.local, true
	}
	d, ok = t.rtt[pair(a, b)]
	return d, ok
}

// OneWay is half the round trip between two regions (0 for a pair the
// table does not list).
func (t *LatencyTable) OneWay(a, b string) time.Duration {
	d, _ := t.RTT(a, b)
	return d / 2
}

// String is the table in ParseLatencyTable's syntax, pairs sorted.
func (t *LatencyTable) String() string {
	var ps [][2]string
	for p := range t.rtt {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool {
		if ps[i][0] != ps[j][0] {
			return ps[i][0] < ps[j][0]
		}
		return ps[i][1] < ps[j][1]
	})
	var parts []string
	for _, p := range ps {
		parts = append(parts, fmt.Sprintf("%s/%s=%s", p[0], p[1], t.rtt[p]))
	}
	if t.local > 0 {
		parts = append(parts, "local="+t.local.String())
	}
	return strings.Join(parts, ",")
}
