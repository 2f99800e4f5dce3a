package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBackupRestoreCLI runs `backup`, `backup verify` and `restore` as
// processes: a backup at the timestamp `kv put` printed, restored into a
// second cluster, scans as the first did then; a corrupted file is named
// by verify and by restore.
func TestBackupRestoreCLI(t *testing.T) {
	src := newInitProcCluster(t, 1, 2)
	dst := newInitProcCluster(t, 1, 2)
	put := func(pc *procCluster, k, v string) string {
		return pc.cliRetry(30*time.Second, "kv", "put", k, v, "--host", pc.addrs[0])
	}
	put(src, "apple", "1")
	put(src, "kiwi", "2")
	out := put(src, "zebra", "3")
	ts := strings.TrimSpace(strings.TrimPrefix(out, "OK "))
	put(src, "kiwi", "changed")
	src.cliRetry(30*time.Second, "kv", "del", "apple", "--host", src.addrs[0])
	put(src, "mango", "later")

	dir := filepath.Join(t.TempDir(), "b1")
	out = src.cliRetry(60*time.Second, "backup", "--to", dir, "--as-of", ts, "--host", src.addrs[0])
	t.Logf("backup: %s", strings.TrimSpace(out))
	if !strings.Contains(out, "3 versions") {
		t.Fatalf("backup at %s: %s, want the 3 keys live then", ts, out)
	}
	out, err := src.cli("backup", "verify", dir)
	if err != nil || !strings.HasPrefix(out, "OK ") {
		t.Fatalf("verify: %s %v", out, err)
	}
	out = dst.cliRetry(60*time.Second, "restore", "--from", dir, "--host", dst.addrs[0])
	t.Logf("restore: %s", strings.TrimSpace(out))
	scan, err := dst.cli("kv", "scan", "--host", dst.addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Fields(scan), []string{"apple", "1", "kiwi", "2", "zebra", "3"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("restored scan %q, want %q (the source at %s)", got, want, ts)
	}
	if _, err := dst.cli("restore", "--from", dir, "--host", dst.addrs[0]); err == nil || !strings.Contains(err.Error(), "has user data") {
		t.Fatalf("restore into a cluster with data: %v", err)
	}
	// The backup's timestamp stays protected until released.
	prots := src.cliRetry(30*time.Second, "backup", "protections", "--host", src.addrs[0])
	if !strings.Contains(prots, "backup "+dir) || !strings.Contains(prots, ts) {
		t.Fatalf("protections: %s, want the backup's record at %s", prots, ts)
	}
	out = src.cliRetry(30*time.Second, "backup", "release", dir, "--host", src.addrs[0])
	if !strings.Contains(out, "released protection") {
		t.Fatalf("release: %s", out)
	}
	if prots = src.cliRetry(30*time.Second, "backup", "protections", "--host", src.addrs[0]); strings.Count(prots, "\n") != 1 {
		t.Fatalf("protections after release: %s", prots)
	}
	file := filepath.Join(dir, "data-000001.rsb")
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-2] ^= 0x40
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"backup", "verify", dir}, {"restore", "--from", dir, "--host", dst.addrs[0]}} {
		_, err := src.cli(args...)
		if err == nil || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), "corrupted") {
			t.Fatalf("%s with a flipped byte: %v, want an error naming %s", args[0]+" "+args[1], err, file)
		}
		t.Logf("%v", err)
	}
}
