package ranges

import (
	"encoding/json"
	"testing"

	"github.com/lni/dragonboat/v4/config"

	"github.com/rangestore/rangestore/proto/rspb"
)

// TestDefaultRaftReplicaConfig: a default Store configures its replicas
// with DefaultRaftReplicaConfig (what bench/compare's ceiling uses), and
// a non-voting record only adds IsNonVoting.
func TestDefaultRaftReplicaConfig(t *testing.T) {
	cfg := StoreConfig{}
	cfg.setDefaults()
	s := &Store{cfg: cfg}
	got := s.replicaConfig(&rspb.ReplicaRecord{RangeId: 7, ReplicaId: 3})
	if want := DefaultRaftReplicaConfig(7, 3); got != want {
		t.Fatalf("default store replica config %+v, DefaultRaftReplicaConfig %+v", got, want)
	}
	nv := s.replicaConfig(&rspb.ReplicaRecord{RangeId: 7, ReplicaId: 3, JoinedNonVoting: true})
	want := DefaultRaftReplicaConfig(7, 3)
	want.IsNonVoting = true
	if nv != want {
		t.Fatalf("non-voting replica config %+v, want %+v", nv, want)
	}
	if err := got.Validate(); err != nil {
		t.Fatalf("default replica config invalid: %v", err)
	}
	if cfg.RTTMillisecond != DefaultRTTMillisecond {
		t.Fatalf("default tick %d ms, DefaultRTTMillisecond %d", cfg.RTTMillisecond, DefaultRTTMillisecond)
	}
}

// TestRaftEngineConfigValid: the shared engine tuning passes Dragonboat's
// own NodeHost validation, and the soft settings are JSON of known,
// positive integer fields.
func TestRaftEngineConfigValid(t *testing.T) {
	logdb, engine := RaftEngineConfig()
	nhc := config.NodeHostConfig{NodeHostDir: t.TempDir(), RTTMillisecond: DefaultRTTMillisecond, RaftAddress: "127.0.0.1:1",
		Expert: config.ExpertConfig{LogDB: logdb, Engine: engine}}
	if err := nhc.Prepare(); err != nil {
		t.Fatalf("prepare: %v", err)
	}
	if err := nhc.Validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	var soft map[string]uint64
	if err := json.Unmarshal([]byte(SoftSettingsJSON), &soft); err != nil {
		t.Fatalf("SoftSettingsJSON: %v", err)
	}
	for _, k := range []string{"NodeReloadMillisecond", "PendingProposalShards", "IncomingProposalQueueLength", "InMemEntrySliceSize", "MinEntrySliceFreeSize"} {
		if soft[k] == 0 {
			t.Errorf("SoftSettingsJSON: %s missing or 0", k)
		}
	}
}
