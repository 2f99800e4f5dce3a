# rangestore — common tasks. `make test` is what CI runs.
GO      ?= go
PKGS    := ./...
# Core packages also run under the race detector.
RACE_PKGS := ./kv/... ./ranges/... ./gateway/... ./leases/... ./node/...

.PHONY: all build test test-race test-fast vet fmt proto demo chaos bench bench-compare bench-failover bench-drain bench-scale clean

all: build

build:
	$(GO) build -o bin/rangestore ./cmd/rangestore

vet:
	$(GO) vet $(PKGS)

fmt:
	gofmt -w $$(git ls-files '*.go')

# Full suite (unit, in-process cluster, multi-process kill -9), then the core
# packages again under -race.
test:
	$(GO) test -count=1 -timeout 15m $(PKGS)
	$(GO) test -count=1 -race -timeout 15m $(RACE_PKGS)

test-fast:
	$(GO) test -count=1 -short $(PKGS)

demo:
	$(GO) run ./cmd/rangestore demo

# Regenerate proto/rspb from proto/*.proto (needs protoc, protoc-gen-go,
# protoc-gen-go-grpc: apt-get install protobuf-compiler; go install
# google.golang.org/protobuf/cmd/protoc-gen-go google.golang.org/grpc/cmd/protoc-gen-go-grpc).
proto:
	cd proto && protoc -I. --go_out=. --go_opt=module=github.com/rangestore/rangestore/proto \
		--go-grpc_out=. --go-grpc_opt=module=github.com/rangestore/rangestore/proto \
		rangestore/v1/kv.proto rangestore/v1/internal.proto

# Porcupine-checked histories under injected faults (partitions, restarts,
# clock jumps, lease transfers, merges). Tune with CHAOS_HISTORIES / CHAOS_DURATION /
# CHAOS_SEED; failing histories are saved as HTML under chaos/chaos-failures/.
CHAOS_HISTORIES ?= 50
CHAOS_DURATION  ?= 15s
chaos:
	CHAOS_HISTORIES=$(CHAOS_HISTORIES) CHAOS_DURATION=$(CHAOS_DURATION) \
		$(GO) test -count=1 -timeout 120m -run 'TestChaos$$' -v ./chaos/

# Unavailability after kill -9 of a leaseholder (3 processes, default settings).
FAILOVER_TRIALS ?= 20
bench-failover:
	$(GO) test -run '^$$' -bench LeaseholderKillFailover -benchtime $(FAILOVER_TRIALS)x -timeout 30m ./cmd/rangestore

# Write unavailability of a graceful stop (SIGTERM under load; 3 processes):
# p99 over DRAIN_TRIALS trials must stay below 200 ms.
DRAIN_TRIALS ?= 10
bench-drain:
	RANGESTORE_DRAIN_TRIALS=$(DRAIN_TRIALS) $(GO) test -count=1 -run TestGracefulStopHandsOffLeases -v -timeout 30m ./cmd/rangestore

# Many ranges on 3 processes: time until every lease is valid, idle CPU and
# RSS per process, restart time, recovery of quiesced ranges after SIGKILL.
SCALE_RANGES ?= 1000
bench-scale:
	RANGESTORE_SCALE_RANGES=$(SCALE_RANGES) $(GO) test -count=1 -run TestScaleRanges -v -timeout 60m ./cmd/rangestore

# Go benchmarks: kv engine plus the load generator's own overhead (bench/).
bench:
	$(GO) test -run '^$$' -bench . -benchtime 2s ./kv/... ./bench/...

# rangestore vs etcd (3 processes each) vs raw Dragonboat on this machine;
# prints the table and rewrites the generated block of bench/RESULTS.md.
bench-compare:
	cd bench/compare && $(GO) run . --write-results ../RESULTS.md

clean:
	rm -rf bin
