package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rangestore/rangestore/chaos"
	"github.com/rangestore/rangestore/proto/rspb"
)

// TestScaleRanges is the many-ranges benchmark (issue 4, acceptance 3; `make
// bench-scale`): RANGESTORE_SCALE_RANGES ranges (e.g. 1000) on three
// `rangestore start` processes. It reports the time from init until every
// range has a valid lease, each process's idle CPU (share of one core, over
// RANGESTORE_SCALE_WINDOW after ranges quiesced) and RSS, the time to
// restart all three processes until every lease is valid again, and how
// long the ranges led by a SIGKILLed node take to get valid leases elsewhere
// (quiesced ranges must be woken for that). After each idle window it also
// logs each process's memory split (RSS anonymous / file-backed; Go heap in
// use, heap idle not yet returned, stacks, runtime overhead, next GC goal),
// and with RANGESTORE_SCALE_PROFILE_DIR set it writes each process's heap
// profile there (n<i>-<phase>.heap, for `go tool pprof -top
// -inuse_space`). Skipped unless the variable is set: it takes minutes.
func TestScaleRanges(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("RANGESTORE_SCALE_RANGES"))
	if n < 4 {
		t.Skip("set RANGESTORE_SCALE_RANGES (e.g. 1000) to run the many-ranges benchmark")
	}
	window := 20 * time.Second
	if d, err := time.ParseDuration(os.Getenv("RANGESTORE_SCALE_WINDOW")); err == nil {
		window = d
	}
	pc := newProcClusterArgs(t, 3, []string{"--http-addr", chaos.FreeLoopback})
	profDir := os.Getenv("RANGESTORE_SCALE_PROFILE_DIR")
	start := time.Now()
	// init makes meta + system + (splits+1) user ranges.
	pc.cliRetry(120*time.Second, "init", "--host", pc.addrs[0], "--initial-splits", strconv.Itoa(n-3), "--timeout", "5m")
	initDone := time.Since(start)
	if err := waitAllLeases(pc, n, []int{0, 1, 2}, 10*time.Minute); err != nil {
		t.Fatal(err)
	}
	startup := time.Since(start)
	t.Logf("scale: %d ranges: init returned after %.1fs, every range had a valid lease after %.1fs", n, initDone.Seconds(), startup.Seconds())

	idle := func(label string) []float64 {
		time.Sleep(30 * time.Second) // idle ranges quiesce after 10 s of election ticks
		var cpus []float64
		before := make([]float64, 3)
		for i := 0; i < 3; i++ {
			before[i] = procCPUSeconds(t, pc.Pid(i))
		}
		time.Sleep(window)
		total := 0.0
		var parts []string
		for i := 0; i < 3; i++ {
			c := (procCPUSeconds(t, pc.Pid(i)) - before[i]) / window.Seconds()
			cpus = append(cpus, c)
			total += c
			parts = append(parts, fmt.Sprintf("n%d %.1f%% / %d MiB RSS", i+1, 100*c, procRSSMiB(t, pc.Pid(i))))
		}
		t.Logf("scale: %s idle CPU over %s: %s; total %.1f%% of one core", label, window, strings.Join(parts, ", "), 100*total)
		for i := 0; i < 3; i++ {
			t.Logf("scale: %s n%d memory: %s", label, i+1, procMemory(t, pc, i, profDir, strings.ReplaceAll(label, " ", "-")))
		}
		return cpus
	}
	cpus := idle("after init")

	// Restart every process: time until all leases are valid again.
	for i := 0; i < 3; i++ {
		pc.kill(i)
	}
	rs := time.Now()
	for i := 0; i < 3; i++ {
		pc.start(i)
	}
	if err := waitAllLeases(pc, n, []int{0, 1, 2}, 10*time.Minute); err != nil {
		t.Fatal(err)
	}
	restart := time.Since(rs)
	t.Logf("scale: restart of all 3 processes: every range had a valid lease after %.1fs", restart.Seconds())
	cpus2 := idle("after restart")

	// SIGKILL the node holding the most leases; its (quiesced) ranges must
	// be woken and their leases move.
	victim, held := 0, -1
	for i := 0; i < 3; i++ {
		if h := leasesHeld(pc, i); h > held {
			victim, held = i, h
		}
	}
	var others []int
	for i := 0; i < 3; i++ {
		if i != victim {
			others = append(others, i)
		}
	}
	victimID := nodeIDOf(pc, victim)
	ks := time.Now()
	pc.kill(victim)
	if err := waitAllLeases(pc, n, others, 5*time.Minute, victimID); err != nil {
		t.Fatal(err)
	}
	t.Logf("scale: after SIGKILL of n%d (holding %d leases of quiesced ranges) every range had a valid lease held by a survivor after %.1fs",
		victimID, held, time.Since(ks).Seconds())
	pc.start(victim)
	t.Logf("scale summary: ranges=%d startup=%.1fs restart=%.1fs idleCPU(after init)=%.1f%%+%.1f%%+%.1f%% idleCPU(after restart)=%.1f%%+%.1f%%+%.1f%% of one core",
		n, startup.Seconds(), restart.Seconds(), 100*cpus[0], 100*cpus[1], 100*cpus[2], 100*cpus2[0], 100*cpus2[1], 100*cpus2[2])
}

// waitAllLeases waits until each of the given nodes lists n ranges, each
// with a lease it judges valid and not held by node notHolder (0 = any).
func waitAllLeases(pc *procCluster, n int, nodes []int, d time.Duration, notHolder ...uint64) error {
	deadline := time.Now().Add(d)
	var last string
	for time.Now().Before(deadline) {
		ok := true
		for _, i := range nodes {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			r, err := rspb.NewAdminClient(pc.Conn(i)).Ranges(ctx, &rspb.RangesRequest{})
			cancel()
			if err != nil {
				ok, last = false, err.Error()
				break
			}
			valid := 0
			for _, ri := range r.Ranges {
				if ri.LeaseValid && (len(notHolder) == 0 || ri.Lease.GetNodeId() != notHolder[0]) {
					valid++
				}
			}
			if len(r.Ranges) != n || valid != n {
				ok, last = false, fmt.Sprintf("n%d: %d ranges, %d with a valid lease", i+1, len(r.Ranges), valid)
				break
			}
		}
		if ok {
			return nil
		}
		time.Sleep(500 * time.Millisecond)
	}
	return fmt.Errorf("leases not all valid after %s: %s", d, last)
}

// nodeIDOf is the node ID of process i.
func nodeIDOf(pc *procCluster, i int) uint64 {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := rspb.NewInternalClient(pc.NodeConn(i)).NodeInfo(ctx, &rspb.NodeInfoRequest{})
	if err != nil {
		return 0
	}
	return info.Node.GetNodeId()
}

// leasesHeld counts the leases held by process i's node (as it reports).
func leasesHeld(pc *procCluster, i int) int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := rspb.NewInternalClient(pc.NodeConn(i)).NodeInfo(ctx, &rspb.NodeInfoRequest{})
	if err != nil {
		return -1
	}
	r, err := rspb.NewAdminClient(pc.Conn(i)).Ranges(ctx, &rspb.RangesRequest{})
	if err != nil {
		return -1
	}
	n := 0
	for _, ri := range r.Ranges {
		if ri.Lease.GetNodeId() == info.Node.GetNodeId() {
			n++
		}
	}
	return n
}

// procCPUSeconds is the user+system CPU time of a process.
func procCPUSeconds(t *testing.T, pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

// procMemory describes process i's memory: the anonymous and file-backed
// parts of its RSS (/proc), and the Go runtime's own accounting from the
// heap profile's MemStats trailer (/debug/pprof/heap?debug=1). With dir
// set it also saves the binary heap profile as dir/n<i>-<phase>.heap.
func procMemory(t *testing.T, pc *procCluster, i int, dir, phase string) string {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pc.Pid(i)))
	if err != nil {
		t.Fatal(err)
	}
	var parts []string
	for _, line := range strings.Split(string(status), "\n") {
		for _, k := range []string{"VmRSS:", "RssAnon:", "RssFile:"} {
			if strings.HasPrefix(line, k) {
				kb, _ := strconv.Atoi(strings.Fields(line)[1])
				parts = append(parts, fmt.Sprintf("%s %d", strings.TrimSuffix(k, ":"), kb/1024))
			}
		}
	}
	goArena, otherAnon := smapsSplitMiB(t, pc.Pid(i))
	parts = append(parts, fmt.Sprintf("anon in Go heap arenas %d, other anon (cgo/Pebble, runtime metadata, thread stacks) %d", goArena, otherAnon))
	addr := pc.HTTPAddr(i)
	get := func(path string) ([]byte, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
		if err != nil {
			return nil, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET %s: %s", path, resp.Status)
		}
		return io.ReadAll(resp.Body)
	}
	text, err := get("/debug/pprof/heap?debug=1")
	if err != nil {
		t.Errorf("n%d heap profile: %v", i+1, err)
		return strings.Join(parts, ", ") + " MiB"
	}
	for _, line := range strings.Split(string(text), "\n") {
		for _, k := range []string{"HeapInuse", "HeapIdle", "HeapReleased", "Stack", "Sys", "NextGC"} {
			if strings.HasPrefix(line, "# "+k+" = ") {
				v, _, _ := strings.Cut(strings.TrimPrefix(line, "# "+k+" = "), " ") // "Stack = inuse / sys"
				b, _ := strconv.ParseUint(v, 10, 64)
				parts = append(parts, fmt.Sprintf("%s %d", k, b>>20))
			}
		}
	}
	if dir != "" {
		bin, err := get("/debug/pprof/heap")
		if err != nil {
			t.Errorf("n%d heap profile: %v", i+1, err)
		} else if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("n%d-%s.heap", i+1, phase)), bin, 0o644); err != nil {
			t.Error(err)
		}
	}
	return strings.Join(parts, ", ") + " MiB"
}

// smapsSplitMiB splits a process's anonymous resident memory (/proc
// smaps) into the part in the Go heap arenas and the rest: memory malloc'd
// through cgo (Pebble's block caches and memtables), the Go runtime's own
// metadata, and thread stacks. The runtime places its arenas at addresses
// of its own choosing (0xc000000000 up, or a random base below the mmap
// area), while glibc's malloc and the runtime's unhinted mappings come
// from the kernel's mmap area at the top of the address space (from about
// 0x7f0000000000 down, by up to 1 TiB of randomisation) or the brk heap
// ("[heap]"): unnamed anonymous mappings in between count as Go heap.
func smapsSplitMiB(t *testing.T, pid int) (goArena, other int) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		t.Fatal(err)
	}
	var inArena, anon bool
	var arenaKB, otherKB int
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
			lo, _, _ := strings.Cut(f[0], "-")
			start, err := strconv.ParseUint(lo, 16, 64)
			if err != nil {
				continue
			}
			anon = f[4] == "0" // no inode: not file-backed
			inArena = len(f) == 5 && start >= 0xc000000000 && start < 0x7e0000000000
			continue
		}
		if len(f) >= 2 && f[0] == "Rss:" && anon {
			kb, _ := strconv.Atoi(f[1])
			if inArena {
				arenaKB += kb
			} else {
				otherKB += kb
			}
		}
	}
	return arenaKB / 1024, otherKB / 1024
}

func procRSSMiB(t *testing.T, pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			kb, _ := strconv.Atoi(strings.Fields(line)[1])
			return kb / 1024
		}
	}
	return 0
}
