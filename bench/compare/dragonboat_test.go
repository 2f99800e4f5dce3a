package main

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/rangestore/rangestore/ranges"
)

// TestCeilingSoftSettingsFile: the soft-settings file Dragonboat reads in
// bench/compare (the working directory of bench-compare and of these
// tests) is rangestore's, byte for byte.
func TestCeilingSoftSettingsFile(t *testing.T) {
	b, err := os.ReadFile(ranges.SoftSettingsFile)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != ranges.SoftSettingsJSON {
		t.Fatalf("%s:\n%s\nwant ranges.SoftSettingsJSON:\n%s", ranges.SoftSettingsFile, b, ranges.SoftSettingsJSON)
	}
	if err := checkSoftSettings(); err != nil {
		t.Fatal(err)
	}
}

// TestCeilingEngineMatchesRangestore: the ceiling's NodeHosts run with the
// engine tuning and tick of a default rangestore Store, and their shards
// with its replica config.
func TestCeilingEngineMatchesRangestore(t *testing.T) {
	c, err := startDragonboat(t.TempDir(), 2)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	logdb, engine := ranges.RaftEngineConfig()
	for i, nh := range c.hosts {
		got := nh.NodeHostConfig()
		if got.RTTMillisecond != ranges.DefaultRTTMillisecond {
			t.Errorf("host %d: RTTMillisecond %d, rangestore %d", i+1, got.RTTMillisecond, ranges.DefaultRTTMillisecond)
		}
		if got.Expert.Engine != engine {
			t.Errorf("host %d: engine %+v, rangestore %+v", i+1, got.Expert.Engine, engine)
		}
		if !reflect.DeepEqual(got.Expert.LogDB, logdb) {
			t.Errorf("host %d: LogDB %+v, rangestore %+v", i+1, got.Expert.LogDB, logdb)
		}
	}
	if s := ranges.RaftTuningSummary(); !strings.Contains(s, "ExecShards 1") || !strings.Contains(s, "PendingProposalShards=1") {
		t.Errorf("summary %q lacks the engine or soft settings", s)
	}
}
