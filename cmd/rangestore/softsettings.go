package main

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/rangestore/rangestore/ranges"
)

// Dragonboat reads its soft settings (per-replica queue sizes, worker poll
// periods) from dragonboat-soft-settings.json in the process's working
// directory, once, when the process starts; code cannot set them. `start`
// therefore writes that file (ranges.SoftSettingsJSON, whose comment gives
// the reasons for each value) under the store directory and re-executes
// itself from there.

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
	if err := os.WriteFile(filepath.Join(dir, ranges.SoftSettingsFile), []byte(ranges.SoftSettingsJSON), 0o644); err != nil {
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
