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
//   - queue lengths sized for about a thousand requests in flight per range
//     instead of 2,048-4,096 slots allocated per replica.
const softSettingsJSON = `{
  "NodeReloadMillisecond": 1000,
  "PendingProposalShards": 1,
  "ReceiveQueueLength": 256,
  "IncomingProposalQueueLength": 1024,
  "IncomingReadIndexQueueLength": 256,
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
