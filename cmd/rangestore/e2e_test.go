package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rangestore/rangestore/chaos"
	"github.com/rangestore/rangestore/proto/rspb"
)

// These tests run real `rangestore start` processes (chaos.ProcCluster) and
// kill them with SIGKILL.

type procCluster struct {
	*chaos.ProcCluster
	t     testing.TB
	bin   string
	addrs []string
}

func newProcCluster(t *testing.T, n int) *procCluster { return newProcClusterB(t, n) }

func newProcClusterB(t testing.TB, n int, env ...string) *procCluster {
	t.Helper()
	return newProcClusterArgs(t, n, nil, env...)
}

// newProcClusterArgs starts n processes with the extra `start` flags args
// (e.g. "--replicate-queue-interval", "1s") and the environment env.
func newProcClusterArgs(t testing.TB, n int, args []string, env ...string) *procCluster {
	t.Helper()
	c, err := chaos.StartProcClusterArgs(t.TempDir(), n, args, env...)
	if err != nil {
		t.Fatal(err)
	}
	pc := &procCluster{ProcCluster: c, t: t, bin: c.Bin, addrs: c.Addrs}
	t.Cleanup(func() {
		if t.Failed() {
			for i := 0; i < n; i++ {
				t.Logf("--- process %d log (tail)\n%s", i, c.Log(i, 3000))
			}
		}
		c.Close()
	})
	return pc
}

// newInitProcCluster starts n processes with the extra `start` flags args
// and initializes the cluster with initialSplits splits.
func newInitProcCluster(t testing.TB, n, initialSplits int, args ...string) *procCluster {
	t.Helper()
	pc := newProcClusterArgs(t, n, args)
	pc.cliRetry(120*time.Second, "init", "--host", pc.addrs[0], "--initial-splits", fmt.Sprint(initialSplits))
	return pc
}

func (pc *procCluster) kill(i int) { pc.Kill(i) }

func (pc *procCluster) start(i int) {
	if err := pc.Start(i); err != nil {
		pc.t.Fatal(err)
	}
}

func (pc *procCluster) indexOfNodeID(id uint64) int { return pc.IndexOfNodeID(id) }

// cli runs the rangestore CLI with the cluster's security flags
// (ClientArgs, after the command's name) and returns its stdout.
func (pc *procCluster) cli(args ...string) (string, error) {
	cmd := exec.Command(pc.bin, pc.withSec(args)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("rangestore %s: %w: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

// withSec inserts the cluster's security flags (--certs-dir DIR or
// --insecure) after the command's name in a CLI command line.
func (pc *procCluster) withSec(args []string) []string {
	return withSecArgs(pc.ClientArgs(), args)
}

// runCLI is runBin with the cluster's security flags.
func (pc *procCluster) runCLI(t *testing.T, args ...string) cliResult {
	t.Helper()
	return runBin(t, nil, pc.withSec(args)...)
}

// cliRetry retries a CLI call until it succeeds or the deadline passes
// (e.g. while an election runs after a kill).
func (pc *procCluster) cliRetry(d time.Duration, args ...string) string {
	pc.t.Helper()
	deadline := time.Now().Add(d)
	for {
		out, err := pc.cli(args...)
		if err == nil {
			return out
		}
		if time.Now().After(deadline) {
			pc.t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (pc *procCluster) initCluster() {
	pc.t.Helper()
	out := pc.cliRetry(60*time.Second, "init", "--host", pc.addrs[0], "--initial-splits", "4")
	if !strings.Contains(out, "initialized: 3 nodes, 7 ranges") {
		pc.t.Fatalf("init output: %s", out)
	}
}

// rangeApplied returns, per range, the applied index reported by node i.
func (pc *procCluster) rangeApplied(i int) (map[string]string, error) {
	out, err := pc.cli("range", "list", "--host", pc.addrs[i])
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
		f := strings.Fields(line)
		m[f[0]] = f[len(f)-1]
	}
	return m, nil
}

// TestProcessClusterKillRestart: three processes + init; the CLI puts, gets
// and scans across ≥ 4 ranges; kill -9 one node, operations continue;
// restart it and it catches up (proven by then killing another node: the
// remaining quorum includes the restarted node).
//
// This is the process test of the --insecure path (plaintext processes and
// CLI calls); the others run secure (certificates made per test).
func TestProcessClusterKillRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	pc := newProcClusterArgs(t, 3, []string{"--insecure"})
	pc.initCluster()
	// Keys in five different user ranges (splits at C, O, b, n).
	keysA := []string{"Apple", "Dragon", "Pebble", "cherry", "raft"}
	for i, k := range keysA {
		pc.cliRetry(30*time.Second, "kv", "put", "--host", pc.addrs[i%3], k, "v1-"+k)
	}
	for _, k := range keysA {
		if out := pc.cliRetry(30*time.Second, "kv", "get", "--host", pc.addrs[2], k); strings.TrimSpace(out) != "v1-"+k {
			t.Fatalf("get %s: %q", k, out)
		}
	}
	out := pc.cliRetry(30*time.Second, "kv", "scan", "--host", pc.addrs[1])
	want := "Apple   v1-Apple\nDragon  v1-Dragon\nPebble  v1-Pebble\ncherry  v1-cherry\nraft    v1-raft\n"
	if out != want {
		t.Fatalf("scan output:\n%s\nwant:\n%s", out, want)
	}
	list := pc.cliRetry(10*time.Second, "range", "list", "--host", pc.addrs[0])
	t.Logf("ranges:\n%s", list)

	// kill -9 the node at index 0; writes and reads continue via the others.
	pc.kill(0)
	keysB := []string{"Banana", "Echo", "Quartz", "delta", "sierra"}
	for i, k := range keysB {
		pc.cliRetry(30*time.Second, "kv", "put", "--host", pc.addrs[1+i%2], k, "v2-"+k)
	}
	for _, k := range append(keysA, keysB...) {
		if out := pc.cliRetry(30*time.Second, "kv", "get", "--host", pc.addrs[1], k); !strings.HasPrefix(strings.TrimSpace(out), "v") {
			t.Fatalf("get %s after kill: %q", k, out)
		}
	}

	// Restart it: it catches up with what it missed.
	pc.start(0)
	deadline := time.Now().Add(60 * time.Second)
	for {
		a0, err0 := pc.rangeApplied(0)
		a1, err1 := pc.rangeApplied(1)
		if err0 == nil && err1 == nil && len(a0) == 7 && fmt.Sprint(a0) == fmt.Sprint(a1) {
			t.Logf("restarted node caught up: applied indexes %v", a0)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("restarted node did not catch up: %v (%v) vs %v (%v)", a0, err0, a1, err1)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Now kill another node: the quorum {0, 2} must serve everything.
	pc.kill(1)
	for _, k := range keysB {
		if out := pc.cliRetry(60*time.Second, "kv", "get", "--host", pc.addrs[0], k); strings.TrimSpace(out) != "v2-"+k {
			t.Fatalf("get %s from restarted node: %q", k, out)
		}
	}
	out = pc.cliRetry(30*time.Second, "kv", "scan", "--host", pc.addrs[2], "--keys-only")
	if got := strings.Fields(out); len(got) != 10 {
		t.Fatalf("scan after restart returned %d keys: %v", len(got), got)
	}
}

// TestProcessClusterCrashAllNoAckedWriteLost: concurrent writers put keys;
// all three processes are killed with SIGKILL while writes are in flight;
// after restart every acknowledged key is present with its value.
func TestProcessClusterCrashAllNoAckedWriteLost(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	pc := newProcCluster(t, 3)
	pc.initCluster()
	clients := make([]rspb.KVClient, 3)
	for i, a := range pc.addrs {
		c, err := pc.Dial(a)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients[i] = rspb.NewKVClient(c)
	}
	const writers = 16
	var (
		mu    sync.Mutex
		acked = map[string]string{}
		wg    sync.WaitGroup
	)
	stop := make(chan struct{})
	alphabet := "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(w)))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := fmt.Sprintf("%c-w%02d-%06d", alphabet[rng.Intn(len(alphabet))], w, i)
				v := fmt.Sprintf("val-%d-%d", w, i)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := clients[rng.Intn(3)].Put(ctx, &rspb.PutRequest{Key: []byte(k), Value: []byte(v)})
				cancel()
				if err == nil {
					mu.Lock()
					acked[k] = v
					mu.Unlock()
				}
			}
		}()
	}
	// Let writes flow, then kill everything mid-stream.
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 1500 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i := 0; i < pc.NumNodes(); i++ {
		pc.kill(i)
	}
	close(stop)
	wg.Wait()
	mu.Lock()
	total := len(acked)
	mu.Unlock()
	if total < 100 {
		t.Fatalf("only %d writes acknowledged before the crash", total)
	}
	t.Logf("%d acknowledged writes before kill -9 of all nodes", total)

	for i := 0; i < pc.NumNodes(); i++ {
		pc.start(i)
	}
	// Read back every acknowledged key (retrying while elections run).
	missing := 0
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	for k, v := range acked {
		for {
			rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
			g, err := clients[0].Get(rctx, &rspb.GetRequest{Key: []byte(k)})
			rcancel()
			if err == nil {
				if !g.Found || string(g.Kv.Value) != v {
					missing++
					t.Errorf("acknowledged key %s lost or wrong after restart: found=%v value=%q", k, g.Found, g.GetKv().GetValue())
				}
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("cluster did not come back: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Logf("verified %d acknowledged keys after restart, %d missing", total, missing)
}
