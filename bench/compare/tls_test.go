package main

import (
	"strings"
	"testing"

	"github.com/rangestore/rangestore/bench"
)

// TestTLSOverhead: the TLS overhead table puts each cell's secure and
// insecure results side by side with their ratio, marks a cell one side
// lacks, and is left out unless both systems ran (or with --insecure,
// where both would be plaintext).
func TestTLSOverhead(t *testing.T) {
	res := func(ops, p50, p99 float64) *bench.Result {
		r := &bench.Result{}
		r.Total.OpsPerSec, r.Total.P50Ms, r.Total.P99Ms = ops, p50, p99
		return r
	}
	all := map[string]systemResults{
		"rangestore":          {"writes@64": res(9000, 6, 20), "reads@64": res(40000, 1.5, 4)},
		"rangestore-insecure": {"writes@64": res(10000, 5.5, 18), "reads@64": res(50000, 1.2, 3)},
	}
	got := tlsOverhead(options{}, all)
	for _, want := range []string{
		"| writes@64 | 9,000 | 6.0 | 20.0 | 10,000 | 5.5 | 18.0 | 0.90× |",
		"| reads@64 | 40,000 | 1.5 | 4.0 | 50,000 | 1.2 | 3.0 | 0.80× |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "scans@64") {
		t.Errorf("a cell neither side ran is listed:\n%s", got)
	}
	all["rangestore-insecure"]["scans@64"] = res(3000, 20, 50)
	if got := tlsOverhead(options{}, all); !strings.Contains(got, "| scans@64 | – | – | – | 3,000 | 20.0 | 50.0 | – |") {
		t.Errorf("a cell only the insecure side ran:\n%s", got)
	}
	if got := tlsOverhead(options{insecure: true}, all); got != "" {
		t.Errorf("with --insecure: %q, want none", got)
	}
	delete(all, "rangestore-insecure")
	if got := tlsOverhead(options{}, all); got != "" {
		t.Errorf("without rangestore-insecure: %q, want none", got)
	}
}
