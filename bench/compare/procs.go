package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/rangestore/rangestore/security"
)

// addrSet is the addresses handed out so far.
type addrSet struct {
	mu sync.Mutex
	m  map[string]bool
}

// pick returns the first address probe offers that s has not handed out
// (at most 100 probes).
func (s *addrSet) pick(probe func() (string, error)) (string, error) {
	const tries = 100
	for range tries {
		addr, err := probe()
		if err != nil {
			return "", err
		}
		s.mu.Lock()
		fresh := !s.m[addr]
		if s.m == nil {
			s.m = map[string]bool{}
		}
		s.m[addr] = true
		s.mu.Unlock()
		if fresh {
			return addr, nil
		}
	}
	return "", fmt.Errorf("free address: offered only addresses handed out before, in %d tries", tries)
}

// handedOut is every address freeAddr returned in this process: the
// kernel may offer a just-closed port again (a second cluster's three
// Dragonboat hosts got the same one twice), so none is returned twice.
var handedOut addrSet

// freeAddr returns a 127.0.0.1 address with a port free now and not
// returned before by this process.
func freeAddr() (string, error) {
	return handedOut.pick(func() (string, error) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		defer l.Close()
		return l.Addr().String(), nil
	})
}

// procGroup is a set of child processes stopped together.
type procGroup struct {
	cmds []*exec.Cmd
	logs []string
}

func (g *procGroup) start(logPath, bin string, args ...string) error {
	f, err := os.Create(logPath)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return err
	}
	go func() { _ = cmd.Wait(); f.Close() }()
	g.cmds = append(g.cmds, cmd)
	g.logs = append(g.logs, logPath)
	return nil
}

// stop sends SIGTERM, waits up to 10 s, then SIGKILLs.
func (g *procGroup) stop() {
	if g == nil {
		return
	}
	for _, c := range g.cmds {
		_ = c.Process.Signal(syscall.SIGTERM)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, c := range g.cmds {
		for time.Now().Before(deadline) && c.ProcessState == nil {
			if err := c.Process.Signal(syscall.Signal(0)); err != nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		_ = c.Process.Kill()
	}
}

// alive reports an error naming the first child that has exited.
func (g *procGroup) alive() error {
	for i, c := range g.cmds {
		if err := c.Process.Signal(syscall.Signal(0)); err != nil {
			b, _ := os.ReadFile(g.logs[i])
			return fmt.Errorf("process %d (%s) exited; log tail:\n%s", i, g.logs[i], tailBytes(b, 2000))
		}
	}
	return nil
}

func tailBytes(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// buildRangestore builds src/cmd/rangestore into dir.
func buildRangestore(src, dir string) (string, error) {
	bin := filepath.Join(dir, "rangestore")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/rangestore")
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/rangestore in %s: %w\n%s", src, err, out)
	}
	return bin, nil
}

// startRangestore starts three `rangestore start` processes (each with
// /metrics on its own --http-addr, and its own zone as its locality) and
// initializes them with splits
// user-range split points. Secure, they use certificates made in
// dir/certs (mutual TLS on gRPC, Raft and gossip, as a deployment runs);
// otherwise they run --insecure (plaintext), for the TLS overhead. extra
// flags are added to every start command.
func startRangestore(bin, dir string, splits int, secure bool, extra ...string) (*rsCluster, error) {
	c := &rsCluster{bin: bin, dir: dir, g: &procGroup{}}
	if err := c.setupSecurity(secure); err != nil {
		return nil, err
	}
	var rafts []string
	for i := 0; i < 3; i++ {
		p := rsProc{label: fmt.Sprintf("n%d", i+1)}
		var err error
		if p.addr, err = freeAddr(); err != nil {
			return nil, err
		}
		if p.httpAddr, err = freeAddr(); err != nil {
			return nil, err
		}
		r, err := freeAddr()
		if err != nil {
			return nil, err
		}
		c.voters, rafts = append(c.voters, p), append(rafts, r)
	}
	addrs := c.addrs(c.voters)
	g := c.g
	for i, p := range c.voters {
		args := append([]string{"start", "--store", filepath.Join(dir, fmt.Sprintf("rs-n%d", i+1)), "--listen-addr", p.addr,
			"--raft-addr", rafts[i], "--http-addr", p.httpAddr, "--join", strings.Join(addrs, ","), "--locality", p.locality(), "--log-level", "warn"}, c.secArgs()...)
		args = append(args, extra...)
		err := g.start(filepath.Join(dir, fmt.Sprintf("rs-n%d.log", i+1)), bin, args...)
		if err != nil {
			g.stop()
			return nil, err
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := exec.Command(bin, append([]string{"init", "--host", addrs[0], "--initial-splits", fmt.Sprint(splits), "--timeout", "20s"}, c.secArgs()...)...).CombinedOutput()
		if err == nil {
			first := strings.SplitN(string(out), "\n", 2)[0]
			fmt.Fprintf(os.Stderr, "rangestore: %s\n", first)
			break
		}
		if aerr := g.alive(); aerr != nil || time.Now().After(deadline) {
			g.stop()
			return nil, fmt.Errorf("rangestore init: %w\n%s%w", err, out, aerr)
		}
		time.Sleep(500 * time.Millisecond)
	}
	return c, nil
}

// setupSecurity makes the cluster's certificates (a CA, a node
// certificate for 127.0.0.1 and localhost, root's client certificate) in
// dir/certs and loads root's for the drivers, or, not secure, sets
// plaintext.
func (c *rsCluster) setupSecurity(secure bool) error {
	if !secure {
		c.creds = insecure.NewCredentials()
		return nil
	}
	c.certsDir = filepath.Join(c.dir, "certs")
	caKey := filepath.Join(c.dir, "ca.key")
	if _, err := security.CreateCA(c.certsDir, caKey, security.CreateOptions{}); err != nil {
		return err
	}
	if _, err := security.CreateNode(c.certsDir, caKey, []string{"127.0.0.1", "localhost"}, security.CreateOptions{}); err != nil {
		return err
	}
	if _, err := security.CreateClient(c.certsDir, caKey, security.RootUser, security.CreateOptions{}); err != nil {
		return err
	}
	m, err := security.NewManager(security.Config{Dir: c.certsDir, User: security.RootUser})
	if err != nil {
		return err
	}
	c.creds = m.ClientCredentials()
	return nil
}

// secArgs are the security flags of the cluster's start and CLI commands.
func (c *rsCluster) secArgs() []string {
	if c.certsDir == "" {
		return []string{"--insecure"}
	}
	return []string{"--certs-dir", c.certsDir}
}

// dialOption is the transport credentials of the cluster's clients (root's
// client certificate, or plaintext).
func (c *rsCluster) dialOption() grpc.DialOption { return grpc.WithTransportCredentials(c.creds) }
