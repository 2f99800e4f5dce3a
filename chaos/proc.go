package chaos

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/rangestore/rangestore/client"
	"github.com/rangestore/rangestore/node"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/security"
)

var (
	buildMu  sync.Mutex
	builtBin string
)

// BuildBinary builds cmd/rangestore once per process and returns its path.
func BuildBinary() (string, error) {
	buildMu.Lock()
	defer buildMu.Unlock()
	if builtBin != "" {
		return builtBin, nil
	}
	dir, err := os.MkdirTemp("", "rangestore-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "rangestore")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/rangestore/rangestore/cmd/rangestore").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, out)
	}
	builtBin = bin
	return bin, nil
}

// RemoveBinary removes what BuildBinary built (a test package's TestMain
// calls it once its tests are done; the next BuildBinary builds again).
func RemoveBinary() {
	buildMu.Lock()
	defer buildMu.Unlock()
	if builtBin != "" {
		_ = os.RemoveAll(filepath.Dir(builtBin))
		builtBin = ""
	}
}

// ProcCluster runs `rangestore start` processes on loopback; Kill sends
// SIGKILL, so no shutdown code runs.
//
// The processes are secure unless the extra `start` flags hold
// "--insecure": the cluster creates, under its directory, a CA (key
// CAKey, outside the certs directory), a node certificate for 127.0.0.1
// and localhost and root's client certificate in CertsDir, and starts
// every process with --certs-dir CertsDir. Conn and KV dial as root;
// NodeConn with the node certificate (what may call Internal); ClientArgs
// are the flags of a CLI call.
type ProcCluster struct {
	Bin   string
	Dir   string
	Addrs []string
	// CertsDir holds ca.crt, node.crt/.key and client.root.crt/.key, and
	// CAKey is the CA's key (to make more certificates); both are empty
	// for an insecure cluster.
	CertsDir, CAKey string
	procs           []*proc
	conns           []*grpc.ClientConn
	nodeConns       []*grpc.ClientConn
	// extraArgs are `start` flags every process gets, AddProc's too
	// (--certs-dir included).
	extraArgs []string
	creds     procCreds
}

// procCreds are root's client credentials and the node certificate's
// (both plaintext for an insecure cluster).
type procCreds struct {
	root, node credentials.TransportCredentials
}

// Hosts of the processes' node certificate.
var certHosts = []string{"127.0.0.1", "localhost"}

// CreateCerts makes a CA (its key at caKey), a node certificate for
// 127.0.0.1 and localhost, and root's client certificate in certsDir.
func CreateCerts(certsDir, caKey string) error {
	if _, err := security.CreateCA(certsDir, caKey, security.CreateOptions{}); err != nil {
		return err
	}
	if _, err := security.CreateNode(certsDir, caKey, certHosts, security.CreateOptions{}); err != nil {
		return err
	}
	_, err := security.CreateClient(certsDir, caKey, security.RootUser, security.CreateOptions{})
	return err
}

// setupSecurity makes the certificates of a cluster under dir, unless
// args asks for --insecure. It returns the certs directory and CA key
// ("" when insecure), the credentials, and the `start` flags of every
// process (args and --certs-dir).
func setupSecurity(dir string, args []string) (certsDir, caKey string, creds procCreds, startArgs []string, err error) {
	if slices.Contains(args, "--insecure") {
		return "", "", procCreds{root: insecure.NewCredentials(), node: insecure.NewCredentials()}, args, nil
	}
	certsDir, caKey = filepath.Join(dir, "certs"), filepath.Join(dir, "ca.key")
	if err := CreateCerts(certsDir, caKey); err != nil {
		return "", "", procCreds{}, nil, fmt.Errorf("chaos: certificates: %w", err)
	}
	root, err := security.NewManager(security.Config{Dir: certsDir, User: security.RootUser})
	if err != nil {
		return "", "", procCreds{}, nil, err
	}
	nodeM, err := security.NewManager(security.Config{Dir: certsDir, User: security.NodeUser})
	if err != nil {
		return "", "", procCreds{}, nil, err
	}
	creds = procCreds{root: root.ClientCredentials(), node: nodeM.ClientCredentials()}
	return certsDir, caKey, creds, append(append([]string(nil), args...), "--certs-dir", certsDir), nil
}

// Secure reports whether the processes run with certificates.
func (pc *ProcCluster) Secure() bool { return pc.CertsDir != "" }

// ClientArgs are the security flags of a CLI call to the cluster:
// --certs-dir CertsDir (as root), or --insecure.
func (pc *ProcCluster) ClientArgs() []string {
	if pc.Secure() {
		return []string{"--certs-dir", pc.CertsDir}
	}
	return []string{"--insecure"}
}

// Dial connects to addr as root (plaintext for an insecure cluster).
func (pc *ProcCluster) Dial(addr string) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr, grpc.WithTransportCredentials(pc.creds.root), grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
}

// ClientOptions are the options of a client.Open of the cluster as root
// (the root client certificate's credentials; plaintext for an insecure
// cluster).
func (pc *ProcCluster) ClientOptions() []client.Option {
	return []client.Option{client.WithTransportCredentials(pc.creds.root)}
}

// dialBoth makes the root and node connections to addr.
func (pc *ProcCluster) dialBoth(addr string) error {
	c, err := pc.Dial(addr)
	if err != nil {
		return err
	}
	nc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(pc.creds.node))
	if err != nil {
		_ = c.Close()
		return err
	}
	pc.conns, pc.nodeConns = append(pc.conns, c), append(pc.nodeConns, nc)
	return nil
}

type proc struct {
	args []string
	env  []string // extra environment for the next start
	http string   // --http-addr given by ServeHTTP ("" = none)
	log  string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// procLogLevel is the processes' --log-level: CHAOS_LOG_LEVEL, else warn
// (info logs every lease, split and merge: useful to read a failure).
func procLogLevel() string {
	if l := os.Getenv("CHAOS_LOG_LEVEL"); l != "" {
		return l
	}
	return "warn"
}

// StartProcCluster starts n processes (not yet initialized) under dir,
// each with the extra environment variables env (KEY=VALUE).
//
// The ports come from node.FreeAddr, which closes its probe socket: another
// program can take a port before the process binds it (a stress run lost
// one process to "address already in use"). Such a start is retried on new
// ports, up to three times, once every process has either said it is
// listening or died.
func StartProcCluster(dir string, n int, env ...string) (*ProcCluster, error) {
	return StartProcClusterArgs(dir, n, nil, env...)
}

// StartProcClusterArgs is StartProcCluster with extra `start` flags (e.g.
// "--replicate-queue-interval", "500ms") for every process, those AddProc
// starts later included.
func StartProcClusterArgs(dir string, n int, args []string, env ...string) (*ProcCluster, error) {
	bin, err := BuildBinary()
	if err != nil {
		return nil, err
	}
	certsDir, caKey, creds, args, err := setupSecurity(dir, args)
	if err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		pc, err := startProcClusterOnce(&ProcCluster{Bin: bin, Dir: dir, extraArgs: args, CertsDir: certsDir, CAKey: caKey, creds: creds}, n, env)
		if err != nil {
			return nil, err
		}
		lost := pc.lostPort(30 * time.Second)
		if lost < 0 {
			return pc, nil
		}
		pc.Close()
		if attempt == 3 {
			return nil, fmt.Errorf("chaos: process %d could not bind its ports in 3 attempts:\n%s", lost, pc.Log(lost, 2000))
		}
		for i := 0; i < n; i++ {
			_ = os.RemoveAll(filepath.Join(dir, fmt.Sprintf("n%d", i)))
			_ = os.Remove(filepath.Join(dir, fmt.Sprintf("n%d.log", i)))
		}
	}
}

// lostPort waits (at most d) until every process has printed that it
// listens or has exited, and returns the index of one that exited because
// a port was taken, or -1.
func (pc *ProcCluster) lostPort(d time.Duration) int {
	deadline := time.Now().Add(d)
	for i := range pc.procs {
		for {
			log := pc.Log(i, 1<<20)
			if strings.Contains(log, "node listening on") {
				break
			}
			if !pc.Running(i) {
				if strings.Contains(log, "address already in use") {
					return i
				}
				break
			}
			if time.Now().After(deadline) {
				return -1 // slow to start: the caller's own waits decide
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return -1
}

// startProcClusterOnce starts n processes of pc (its binary, directory,
// flags and credentials set).
func startProcClusterOnce(pc *ProcCluster, n int, env []string) (*ProcCluster, error) {
	dir, args := pc.Dir, pc.extraArgs
	var raft []string
	for i := 0; i < n; i++ {
		a, err := node.FreeAddr()
		if err != nil {
			return nil, err
		}
		r, err := node.FreeAddr()
		if err != nil {
			return nil, err
		}
		pc.Addrs = append(pc.Addrs, a)
		raft = append(raft, r)
	}
	for i := 0; i < n; i++ {
		pc.procs = append(pc.procs, &proc{
			args: append([]string{"start", "--store", filepath.Join(dir, fmt.Sprintf("n%d", i)), "--listen-addr", pc.Addrs[i],
				"--raft-addr", raft[i], "--http-addr", "", "--join", strings.Join(pc.Addrs, ","), "--log-level", procLogLevel()}, args...),
			log: filepath.Join(dir, fmt.Sprintf("n%d.log", i)),
			env: env,
		})
		if err := pc.procs[i].freeHTTP(); err != nil {
			pc.Close()
			return nil, err
		}
		if err := pc.Start(i); err != nil {
			pc.Close()
			return nil, err
		}
		if err := pc.dialBoth(pc.Addrs[i]); err != nil {
			pc.Close()
			return nil, err
		}
	}
	return pc, nil
}

// AddProc starts one more process on an empty store with the gRPC
// addresses of the processes at the indexes in join as its --join list:
// it joins the running cluster (`start --join`). It returns its index.
func (pc *ProcCluster) AddProc(join []int, env ...string) (int, error) {
	return pc.AddProcArgs(join, nil, env...)
}

// AddProcArgs is AddProc with extra `start` flags for this process only
// (e.g. "--read-replica"), after those of StartProcClusterArgs.
func (pc *ProcCluster) AddProcArgs(join []int, args []string, env ...string) (int, error) {
	a, err := node.FreeAddr()
	if err != nil {
		return 0, err
	}
	r, err := node.FreeAddr()
	if err != nil {
		return 0, err
	}
	var joinAddrs []string
	for _, j := range join {
		joinAddrs = append(joinAddrs, pc.Addrs[j])
	}
	i := len(pc.procs)
	pc.Addrs = append(pc.Addrs, a)
	pc.procs = append(pc.procs, &proc{
		args: append([]string{"start", "--store", filepath.Join(pc.Dir, fmt.Sprintf("n%d", i)), "--listen-addr", a,
			"--raft-addr", r, "--http-addr", "", "--join", strings.Join(joinAddrs, ","), "--log-level", "warn"}, append(append([]string(nil), pc.extraArgs...), args...)...),
		log: filepath.Join(pc.Dir, fmt.Sprintf("n%d.log", i)),
		env: env,
	})
	if err := pc.procs[i].freeHTTP(); err != nil {
		return 0, err
	}
	if err := pc.dialBoth(a); err != nil {
		return 0, err
	}
	return i, pc.Start(i)
}

// Start (re)starts process i.
func (pc *ProcCluster) Start(i int) error {
	p := pc.procs[i]
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		select {
		case <-p.done: // it died on its own; start it again
			p.cmd = nil
		default:
			return nil
		}
	}
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(pc.Bin, p.args...)
	cmd.Stdout, cmd.Stderr = f, f
	if len(p.env) > 0 {
		cmd.Env = append(os.Environ(), p.env...)
	}
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return err
	}
	p.cmd, p.done = cmd, make(chan struct{})
	done := p.done
	go func() { _ = cmd.Wait(); _ = f.Close(); close(done) }()
	return nil
}

// Kill sends SIGKILL to process i and waits for it to die.
func (pc *ProcCluster) Kill(i int) {
	p := pc.procs[i]
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	p.cmd = nil
}

// Terminate sends SIGTERM to process i (a graceful stop) and waits for it
// to exit; after timeout it sends SIGKILL. It reports whether the process
// exited on its own.
func (pc *ProcCluster) Terminate(i int, timeout time.Duration) bool {
	p := pc.procs[i]
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return true
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	graceful := true
	select {
	case <-p.done:
	case <-time.After(timeout):
		graceful = false
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
	p.cmd = nil
	return graceful
}

// Running reports whether process i is running.
func (pc *ProcCluster) Running(i int) bool {
	p := pc.procs[i]
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Pid is the process ID of process i (0 if it is not running).
func (pc *ProcCluster) Pid(i int) int {
	p := pc.procs[i]
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// SetEnv sets the extra environment of process i's next start.
func (pc *ProcCluster) SetEnv(i int, env ...string) {
	p := pc.procs[i]
	p.mu.Lock()
	defer p.mu.Unlock()
	p.env = env
}

// Log returns the tail of process i's log.
func (pc *ProcCluster) Log(i int, n int) string {
	b, _ := os.ReadFile(pc.procs[i].log)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// Init initializes the cluster through node 0 (retrying while nodes start).
func (pc *ProcCluster) Init(ctx context.Context, splits int) (*rspb.InitResponse, error) {
	for {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		r, err := rspb.NewAdminClient(pc.conns[0]).Init(actx, &rspb.InitRequest{InitialSplits: int32(splits)})
		cancel()
		if err == nil {
			return r, nil
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// IndexOfNodeID maps a node ID to its process index (init numbers nodes
// 1..n in the order of their gRPC addresses).
func (pc *ProcCluster) IndexOfNodeID(id uint64) int {
	sorted := append([]string(nil), pc.Addrs...)
	sort.Strings(sorted)
	if id == 0 || int(id) > len(sorted) {
		return -1
	}
	for i, x := range pc.Addrs {
		if x == sorted[id-1] {
			return i
		}
	}
	return -1
}

// NumNodes is the number of processes.
func (pc *ProcCluster) NumNodes() int { return len(pc.procs) }

// Conn is a client connection to process i (as root).
func (pc *ProcCluster) Conn(i int) *grpc.ClientConn { return pc.conns[i] }

// NodeConn is a connection to process i with the node certificate: it may
// call Internal (which refuses client certificates) but not KV.
func (pc *ProcCluster) NodeConn(i int) *grpc.ClientConn { return pc.nodeConns[i] }

// KV is a KV client of process i.
func (pc *ProcCluster) KV(i int) rspb.KVClient { return rspb.NewKVClient(pc.conns[i]) }

// Close kills every process and closes connections.
func (pc *ProcCluster) Close() {
	for _, c := range append(append([]*grpc.ClientConn(nil), pc.conns...), pc.nodeConns...) {
		_ = c.Close()
	}
	for i := range pc.procs {
		pc.Kill(i)
	}
}

// SetArg sets a flag (e.g. "--listen-addr") of process i's next start to
// value; remove drops the flag instead.
func (pc *ProcCluster) SetArg(i int, flag, value string, remove bool) {
	p := pc.procs[i]
	p.mu.Lock()
	defer p.mu.Unlock()
	var args []string
	found := false
	for j := 0; j < len(p.args); j++ {
		if p.args[j] == flag && j+1 < len(p.args) {
			j++
			if !remove && !found {
				args = append(args, flag, value)
				found = true
			}
			continue
		}
		args = append(args, p.args[j])
	}
	if !remove && !found {
		args = append(args, flag, value)
	}
	p.args = args
}

// WaitExit waits up to d for process i to exit on its own and reports
// whether it did.
func (pc *ProcCluster) WaitExit(i int, d time.Duration) bool {
	p := pc.procs[i]
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return true
	}
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// FreeLoopback as the value of "--http-addr" in the extra `start` flags
// of StartProcClusterArgs makes every process, those AddProc starts
// included, serve HTTP (/metrics, /healthz) on a free loopback address of
// its own (HTTPAddr). Processes serve none otherwise.
const FreeLoopback = "free-loopback"

// freeHTTP gives the process a free loopback address if its flags ask
// for one (FreeLoopback).
func (p *proc) freeHTTP() error {
	for j := len(p.args) - 2; j >= 0; j-- {
		if p.args[j] != "--http-addr" {
			continue
		}
		if p.args[j+1] != FreeLoopback {
			return nil // the last one counts
		}
		a, err := node.FreeAddr()
		if err != nil {
			return err
		}
		p.args[j+1], p.http = a, a
		return nil
	}
	return nil
}

// ServeHTTP makes process i serve HTTP (/metrics, /healthz) on a free
// loopback address from its next start on, and returns that address.
// Processes serve none unless asked (`--http-addr ""`). Calling it again
// returns the same address.
func (pc *ProcCluster) ServeHTTP(i int) (string, error) {
	p := pc.procs[i]
	p.mu.Lock()
	a := p.http
	p.mu.Unlock()
	if a != "" {
		return a, nil
	}
	a, err := node.FreeAddr()
	if err != nil {
		return "", err
	}
	pc.SetArg(i, "--http-addr", a, false)
	p.mu.Lock()
	p.http = a
	p.mu.Unlock()
	return a, nil
}

// HTTPAddr is the HTTP address ServeHTTP gave process i ("" if none).
func (pc *ProcCluster) HTTPAddr(i int) string {
	p := pc.procs[i]
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.http
}
