# rangestore — common tasks. `make test` is what CI runs.
GO      ?= go
PKGS    := ./...
# Core packages also run under the race detector.
RACE_PKGS := ./kv/... ./ranges/... ./gateway/... ./leases/... ./node/...

.PHONY: all build test test-race test-fast vet fmt lint proto checkgenerate demo stress chaos fuzz bench bench-compare bench-failover bench-drain bench-scale clean

# Pinned tools. Go tools are installed with `go install` into a directory
# named after their version under bin/tools, so that a version bump here
# installs the new one. protoc comes from the system (Debian's
# protobuf-compiler) and is only checked.
TOOLS                      := $(CURDIR)/bin/tools
GOLANGCI_LINT_VERSION      := v2.15.0
PROTOC_VERSION             := 3.21.12
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
GOLANGCI_LINT      := $(TOOLS)/golangci-lint-$(GOLANGCI_LINT_VERSION)/golangci-lint
PROTOC_GEN_GO      := $(TOOLS)/protoc-gen-go-$(PROTOC_GEN_GO_VERSION)/protoc-gen-go
PROTOC_GEN_GO_GRPC := $(TOOLS)/protoc-gen-go-grpc-$(PROTOC_GEN_GO_GRPC_VERSION)/protoc-gen-go-grpc

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
	$(GO) test -count=1 -timeout 25m $(PKGS)
	$(GO) test -count=1 -race -timeout 25m $(RACE_PKGS)

test-fast:
	$(GO) test -count=1 -short $(PKGS)

# staticcheck, errorlint, unused, govet, ineffassign, errcheck
# (.golangci.yaml). The first run installs the pinned golangci-lint.
# --allow-serial-runners: a second lint on this machine (another checkout,
# a parallel CI run) waits for the first instead of failing.
lint: $(GOLANGCI_LINT)
	$(GOLANGCI_LINT) run --allow-serial-runners ./...

$(GOLANGCI_LINT):
	GOBIN=$(@D) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

demo:
	$(GO) run ./cmd/rangestore demo

# Regenerate proto/rspb from proto/rangestore/v1/*.proto with the pinned
# protoc (apt-get install protobuf-compiler) and plugins (installed on first
# use).
proto: $(PROTOC_GEN_GO) $(PROTOC_GEN_GO_GRPC)
	@v=$$(protoc --version 2>/dev/null); if [ "$$v" != "libprotoc $(PROTOC_VERSION)" ]; then \
		echo "protoc $(PROTOC_VERSION) is required (apt-get install protobuf-compiler), found: $${v:-no protoc on PATH}" >&2; exit 1; fi
	@v=$$($(PROTOC_GEN_GO) --version); if [ "$$v" != "protoc-gen-go $(PROTOC_GEN_GO_VERSION)" ]; then \
		echo "$(PROTOC_GEN_GO) is $$v, want $(PROTOC_GEN_GO_VERSION)" >&2; exit 1; fi
	@v=$$($(PROTOC_GEN_GO_GRPC) --version); if [ "$$v" != "protoc-gen-go-grpc $(PROTOC_GEN_GO_GRPC_VERSION:v%=%)" ]; then \
		echo "$(PROTOC_GEN_GO_GRPC) is $$v, want $(PROTOC_GEN_GO_GRPC_VERSION)" >&2; exit 1; fi
	cd proto && protoc -I. \
		--plugin=protoc-gen-go=$(PROTOC_GEN_GO) --plugin=protoc-gen-go-grpc=$(PROTOC_GEN_GO_GRPC) \
		--go_out=. --go_opt=module=github.com/rangestore/rangestore/proto \
		--go-grpc_out=. --go-grpc_opt=module=github.com/rangestore/rangestore/proto \
		rangestore/v1/kv.proto rangestore/v1/admin.proto rangestore/v1/internal.proto rangestore/v1/persisted.proto rangestore/v1/backup.proto \
		rangestore/v1/discovery.proto

# Fails if the committed generated code differs from what `make proto`
# produces (a hand edit, or a .proto changed without regenerating).
checkgenerate: proto
	@git diff --exit-code -- proto/ || { echo "proto/: generated code is out of date or hand-edited; run make proto and commit the result" >&2; exit 1; }
	@untracked=$$(git ls-files --others --exclude-standard -- proto/); if [ -n "$$untracked" ]; then \
		echo "make proto created files that are not committed:" >&2; echo "$$untracked" >&2; exit 1; fi

$(PROTOC_GEN_GO):
	GOBIN=$(@D) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)

$(PROTOC_GEN_GO_GRPC):
	GOBIN=$(@D) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

# Every test of the cluster packages (in-process clusters in node/, real
# processes in cmd/rangestore) STRESS_COUNT times; stops at the first
# failure. 20 runs take about two hours on 2 cores: STRESS_RUN narrows it
# to some tests, e.g. STRESS_RUN=TestMergeRightAfterSplit.
STRESS_COUNT ?= 20
STRESS_RUN   ?= .
stress:
	$(GO) test -count=$(STRESS_COUNT) -failfast -run '$(STRESS_RUN)' -timeout 300m ./node/ ./cmd/rangestore/

# Go native fuzz targets (package:target), each run for FUZZTIME, one after
# the other. Their seed corpora (testdata/fuzz/<target>/ in each package)
# are replayed by plain `go test`; a crash found here is saved there too:
# commit it with the fix. FUZZFLAGS adds flags, e.g. FUZZFLAGS=-parallel=1.
FUZZTIME    ?= 5m
FUZZFLAGS   ?=
FUZZ_TARGETS := \
	./gateway:FuzzRequestValidation \
	./kv/keys:FuzzUserAndSystemKeys \
	./kv:FuzzMVCCKey \
	./kv:FuzzMVCCValue \
	./ranges:FuzzRangeState \
	./ranges:FuzzSnapshotHeader \
	./ranges/batcheval:FuzzScanResume
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "== $$name ($$pkg, $(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $(FUZZFLAGS) $$pkg/; \
	done

# Porcupine-checked histories under injected faults (partitions, restarts,
# clock jumps, kill -9, lease transfers, merges, replica removals,
# relocations, decommissions: chaos.AllFaults). Tune with CHAOS_HISTORIES /
# CHAOS_DURATION / CHAOS_MODE (proc or inproc only) / CHAOS_FAULTS
# (kind,kind) / CHAOS_SEED / CHAOS_REBALANCE (aggressive: the processes
# rebalance replicas and leases down to a margin of one, and each history
# logs the moves made; default: the default thresholds); failing histories
# are saved as HTML under chaos/chaos-failures/.
CHAOS_HISTORIES ?= 50
CHAOS_DURATION  ?= 15s
CHAOS_REBALANCE ?= aggressive
CHAOS_TXNS ?= on
chaos:
	CHAOS_HISTORIES=$(CHAOS_HISTORIES) CHAOS_DURATION=$(CHAOS_DURATION) CHAOS_REBALANCE=$(CHAOS_REBALANCE) CHAOS_TXNS=$(CHAOS_TXNS) \
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
