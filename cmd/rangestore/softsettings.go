package main

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// Dragonboat reads its soft settings (per-replica queue sizes, worker poll
// periods) from dragonboat-soft-settings.json in the process's working
// directory, once, when the process starts; code cannot set them. `start`
// therefore writes that file under the store directory and re-executes
// itself from there. The values keep per-replica memory and the idle cost
// of thousands of ranges low (measured for issue 4: 1,000 ranges idle at a
// few percent of a core instead of saturating it):
//
//   - NodeReloadMillisecond 1000: the engine's fallback poll over every
//     replica (default 200 ms; all real work is signalled explicitly);
//   - PendingProposalShards 1: one proposal table per replica (default 16);
//   - per-replica queue lengths cut to what one range needs (issue 14, item
//     5). Dragonboat allocates every queue twice (double-buffered) and in
//     full when a replica starts, so its length times its element size is
//     live heap per replica whether used or not, and the Go GC's heap goal
//     (twice the live heap) lets about as much garbage again become RSS:
//   - IncomingProposalQueueLength 256: proposals queued on a replica
//     between two runs of the step worker (2 x 256 x 80-byte entries = 40
//     KiB a replica; 1,024 gave 160 KiB, 160 MiB of heap at 1,000 ranges).
//     A client waits for its proposal to apply before proposing again, so
//     this bounds the writers in flight on one range, not the rate; beyond
//     it a proposal gets ErrSystemBusy and is retried after 20 ms. The
//     largest bench cell puts 256 writers on 64 ranges, 64 on one range.
//   - ReceiveQueueLength 128: Raft messages queued on a replica between two
//     runs of the step worker (2 x 128 x 304-byte messages = 76 KiB; 256
//     gave 152 KiB, 152 MiB at 1,000 ranges). With three replicas a range
//     gets a few messages per peer per step (appends and their
//     acknowledgements, heartbeats, forwarded proposals); a message beyond
//     the length is dropped (Raft recovers: the next append or heartbeat
//     finds the gap and the leader sends again);
//   - IncomingReadIndexQueueLength 16: the store's only ReadIndex calls
//     wake a quiesced range, at most one per replica per election timeout
//     (Replica.wake); reads are served under the lease. 256 gave 4 KiB of
//     pointers a replica;
//   - InMemEntrySliceSize 64, MinEntrySliceFreeSize 16: Raft's in-memory
//     log is kept in slices of 64 entries (default 512), a new one started
//     when fewer than 16 are free.
const softSettingsJSON = `{
  "NodeReloadMillisecond": 1000,
  "PendingProposalShards": 1,
  "ReceiveQueueLength": 128,
  "IncomingProposalQueueLength": 256,
  "IncomingReadIndexQueueLength": 16,
  "InMemEntrySliceSize": 64,
  "MinEntrySliceFreeSize": 16
}
`

const (
	softSettingsEnv = "RANGESTORE_SOFT_SETTINGS"
	origCwdEnv      = "RANGESTORE_ORIG_CWD"
)

// reexecWithSoftSettings re-executes the process from <store>/dragonboat
// with the soft settings file in place (once: the child sees the
// environment marker and returns nil).
func reexecWithSoftSettings(store string) error {
	if os.Getenv(softSettingsEnv) != "" || os.Getenv("RANGESTORE_NO_SOFT_SETTINGS") != "" {
		return nil
	}
	abs, err := filepath.Abs(store)
	if err != nil {
		return err
	}
	dir := filepath.Join(abs, "dragonboat")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("store directory: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "dragonboat-soft-settings.json"), []byte(softSettingsJSON), 0o644); err != nil {
		return err
	}
	cwd, err := os.Getwd()
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	env := append(os.Environ(), softSettingsEnv+"="+dir, origCwdEnv+"="+cwd)
	if err := os.Chdir(dir); err != nil {
		return err
	}
	return syscall.Exec(exe, os.Args, env)
}

// fromOrigCwd resolves a path given on the command line against the
// directory the user started the command in (before the re-exec).
func fromOrigCwd(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	if cwd := os.Getenv(origCwdEnv); cwd != "" {
		return filepath.Join(cwd, p)
	}
	return p
}
