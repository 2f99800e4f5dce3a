package bench

import (
	"os"
	"testing"

	"github.com/rangestore/rangestore/ranges"
)

// TestSoftSettingsFile: the in-process clusters of this package's tests,
// benchmarks and profiles run with the Dragonboat soft settings of a real
// `rangestore start` process. Dragonboat reads them once at start-up from
// the working directory, which for `go test ./bench/` is this directory;
// the file here must be ranges.SoftSettingsJSON byte for byte.
func TestSoftSettingsFile(t *testing.T) {
	b, err := os.ReadFile(ranges.SoftSettingsFile)
	if err != nil {
		t.Fatalf("%v: bench/ must hold rangestore's Dragonboat soft settings", err)
	}
	if string(b) != ranges.SoftSettingsJSON {
		t.Fatalf("bench/%s:\n%s\nwant ranges.SoftSettingsJSON:\n%s", ranges.SoftSettingsFile, b, ranges.SoftSettingsJSON)
	}
}
