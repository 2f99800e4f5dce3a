package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anishathalye/porcupine"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rangestore/rangestore/client"
	"github.com/rangestore/rangestore/proto/rspb"
)

// KVNodes is what raw-gRPC porcupine clients (StartClients) need of a
// cluster: a KV client per node (ProcCluster and the in-process targets
// have one).
type KVNodes interface {
	NumNodes() int
	KV(i int) rspb.KVClient
}

// ClientOptions shape a ClientLoad.
type ClientOptions struct {
	Keys    []string // the keys the clients work on
	Clients int
	// Seed: client c draws its operations (and nodes) from a source seeded
	// with Seed*1000+c.
	Seed int64
	// Start: operation times are recorded relative to it (zero: now).
	Start time.Time
	// Timeout bounds each operation (zero: 3 s).
	Timeout time.Duration
	// Pause is a client's wait after each operation (zero: none).
	Pause time.Duration
}

// ClientLoad is a set of porcupine clients doing get/put/cas/conditional
// delete on a few keys, each through its own client.DB (StartDBClients)
// or raw gRPC to random nodes (StartClients), recording every operation
// for the linearizability check (KVModel). Its goroutines run until Stop.
type ClientLoad struct {
	start time.Time
	done  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup

	mu        sync.Mutex
	ops       []porcupine.Operation
	targets   []int // nodes the clients pick from (nil: every node)
	preferred int   // a node also taking half the reads (-1: none)
	// viaPreferred counts the operations recorded through the preferred
	// node since it was named.
	viaPreferred int

	ambiguous, failedReads, failedWrites, reads, cdels, cdelsOK atomic.Int64

	// dbs are the clients' client.DBs (StartDBClients), closed by Stop.
	dbs []*client.DB
}

// ClientStats are a ClientLoad's operation counts.
type ClientStats struct {
	Ops, Ambiguous, Reads, FailedReads, CondDeletes, CondDeletesOK int
	// FailedWrites: writes that failed and definitely did not apply (left
	// out of the history).
	FailedWrites int
	// ViaPreferred: operations recorded through the node PreferReads
	// named, since it named it.
	ViaPreferred int
	// Routing: the client.DBs' routing counters summed (StartDBClients).
	Routing client.Stats
}

// record adds op to the history; viaPreferred: it went through the
// preferred node.
func (l *ClientLoad) record(op porcupine.Operation, viaPreferred bool) {
	l.mu.Lock()
	l.ops = append(l.ops, op)
	if viaPreferred {
		l.viaPreferred++
	}
	l.mu.Unlock()
}

// pick draws the node for an operation from the targets (from all n
// nodes if none are set; one draw either way), and returns the preferred
// node too (-1: none).
func (l *ClientLoad) pick(rng *rand.Rand, n int) (via, preferred int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.targets == nil {
		return rng.Intn(n), l.preferred
	}
	return l.targets[rng.Intn(len(l.targets))], l.preferred
}

// SetTargets makes the clients send their operations through the nodes
// listed (none: every node), e.g. all but a node about to be killed
// (StartClients only: a client.DB picks its nodes itself).
func (l *ClientLoad) SetTargets(nodes []int) {
	l.mu.Lock()
	l.targets = append([]int(nil), nodes...)
	l.mu.Unlock()
}

// PreferReads sends half the reads through node i from now on, and counts
// the operations recorded through it from now on (ClientStats.ViaPreferred;
// StartClients only).
func (l *ClientLoad) PreferReads(i int) {
	l.mu.Lock()
	l.preferred, l.viaPreferred = i, 0
	l.mu.Unlock()
}

// StartClients starts o.Clients clients on o.Keys sending raw gRPC
// requests through the nodes of kvs (SetTargets and PreferReads choose
// which): for tests of a node's own routing (a node that serves reads
// after a repair). A failed read is left out (it has no effect); a failed
// write is ambiguous (it may have happened) unless it was never sent
// (neverSent).
func StartClients(ctx context.Context, kvs KVNodes, o ClientOptions) *ClientLoad {
	l := newClientLoad(o)
	for c := 0; c < o.Clients; c++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.run(ctx, c, o, func(rng *rand.Rand, read bool) (doer, bool) {
				via, preferred := l.pick(rng, kvs.NumNodes())
				if read && preferred >= 0 && rng.Intn(2) == 0 {
					via = preferred // half the reads (an extra draw only with a preferred node)
				}
				return rawDoer{kvs.KV(via)}, via == preferred
			})
		}()
	}
	return l
}

// DBOpener opens the client.DB of client c of a load (its own routing
// cache and connections, as a separate application process would have).
type DBOpener func(ctx context.Context, c int) (*client.DB, error)

// OpenDBs is a DBOpener of client.Open on addrs with opts, each client
// seeded with the addresses in another order (its first routing table
// comes from another node).
func OpenDBs(addrs []string, opts ...client.Option) DBOpener {
	return func(ctx context.Context, c int) (*client.DB, error) {
		if len(addrs) == 0 {
			return nil, fmt.Errorf("chaos: OpenDBs: no node address")
		}
		k := c % len(addrs)
		seeds := append(append([]string(nil), addrs[k:]...), addrs[:k]...)
		return client.Open(ctx, seeds, opts...)
	}
}

// StartDBClients starts o.Clients clients on o.Keys, each issuing its
// operations through its own client.DB (open), which routes them to the
// leaseholders itself. Outcomes are recorded as doc.go's mapping says
// (dbWriteNotApplied). The DBs are closed by Stop.
func StartDBClients(ctx context.Context, open DBOpener, o ClientOptions) (*ClientLoad, error) {
	l := newClientLoad(o)
	octx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for c := 0; c < o.Clients; c++ {
		db, err := open(octx, c)
		if err != nil {
			for _, d := range l.dbs {
				d.Close()
			}
			return nil, fmt.Errorf("chaos: client %d: %w", c, err)
		}
		l.dbs = append(l.dbs, db)
	}
	for c, db := range l.dbs {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.run(ctx, c, o, func(*rand.Rand, bool) (doer, bool) { return dbDoer{db}, false })
		}()
	}
	return l, nil
}

func newClientLoad(o ClientOptions) *ClientLoad {
	start := o.Start
	if start.IsZero() {
		start = time.Now()
	}
	return &ClientLoad{start: start, done: make(chan struct{}), preferred: -1}
}

// run is client c's loop until Stop or ctx ends: draw an operation, issue
// it through the doer route picks (viaPreferred: it goes through the
// preferred node), record its outcome.
func (l *ClientLoad) run(ctx context.Context, c int, o ClientOptions, route func(rng *rand.Rand, read bool) (doer, bool)) {
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 3 * time.Second
	}
	keys := o.Keys
	crng := rand.New(rand.NewSource(o.Seed*1000 + int64(c)))
	seen := map[string]string{}
	for seq := 0; ; seq++ {
		select {
		case <-l.done:
			return
		case <-ctx.Done():
			return
		default:
		}
		if o.Pause > 0 && seq > 0 {
			time.Sleep(o.Pause)
		}
		k := keys[crng.Intn(len(keys))]
		p := crng.Intn(10)
		d, viaPreferred := route(crng, p < 4)
		in := Input{Key: k}
		call := time.Since(l.start).Nanoseconds()
		octx, ocancel := context.WithTimeout(ctx, timeout)
		var out Output
		var err error
		switch {
		case p < 4:
			in.Op = "get"
			out.Found, out.Value, err = d.get(octx, k)
			if err == nil {
				if out.Found {
					seen[k] = out.Value
				} else {
					delete(seen, k)
				}
			}
		case p < 7:
			in.Op, in.Value = "put", fmt.Sprintf("c%d-%d", c, seq)
			err = d.put(octx, k, in.Value)
		case p < 8:
			// Conditional delete: delete the key if it still holds the
			// value this client last saw (or, if it saw none, if it is
			// absent: a no-op that still checks).
			in.Op, in.Expected, in.Absent = "cdel", seen[k], seen[k] == ""
			var r cputResult
			r, err = d.cput(octx, k, "", in.Expected, in.Absent, true)
			if err == nil {
				out.OK = r.ok
				switch {
				case r.ok || !r.actualExists:
					delete(seen, k)
				default:
					seen[k] = r.actual
				}
			}
		default:
			in.Op, in.Value, in.Expected, in.Absent = "cas", fmt.Sprintf("c%d-%d", c, seq), seen[k], seen[k] == ""
			var r cputResult
			r, err = d.cput(octx, k, in.Value, in.Expected, in.Absent, false)
			if err == nil {
				out.OK = r.ok
				if !r.ok && r.actualExists {
					seen[k] = r.actual
				}
			}
		}
		ocancel()
		ret := time.Since(l.start).Nanoseconds()
		if in.Op == "get" {
			l.reads.Add(1)
		}
		notApplied := err != nil && in.Op != "get" && d.notApplied(err)
		if in.Op == "cdel" && !notApplied {
			l.cdels.Add(1)
			if err == nil && out.OK {
				l.cdelsOK.Add(1)
			}
		}
		if err != nil {
			// Back off a little, as a real client does (a stopped node
			// would otherwise be hammered at full speed).
			time.Sleep(20 * time.Millisecond)
			if in.Op == "get" {
				l.failedReads.Add(1) // a failed read has no effect: leave it out
				continue
			}
			if notApplied {
				l.failedWrites.Add(1) // definitely no effect: leave it out
				continue
			}
			out.Unknown = true
			l.ambiguous.Add(1)
			ret = -1 // patched to the end of the history
		}
		l.record(porcupine.Operation{ClientId: c, Input: in, Call: call, Output: out, Return: ret}, viaPreferred)
	}
}

// cputResult is a conditional write's answer: whether its condition held
// (and it applied) and, if not, what the key held.
type cputResult struct {
	ok, actualExists bool
	actual           string
}

// doer issues one operation of a client: raw gRPC to one node (rawDoer)
// or through a client.DB (dbDoer).
type doer interface {
	get(ctx context.Context, key string) (found bool, value string, err error)
	put(ctx context.Context, key, value string) error
	// cput writes value (del: deletes the key) if the key holds expected
	// (absent: has no value).
	cput(ctx context.Context, key, value, expected string, absent, del bool) (cputResult, error)
	// notApplied: a write that failed with err definitely did not apply
	// (it is left out of the history); otherwise it may have.
	notApplied(err error) bool
}

type rawDoer struct{ kv rspb.KVClient }

func (d rawDoer) get(ctx context.Context, key string) (bool, string, error) {
	g, err := d.kv.Get(ctx, &rspb.GetRequest{Key: []byte(key)})
	if err != nil {
		return false, "", err
	}
	return g.Found, string(g.GetKv().GetValue()), nil
}

func (d rawDoer) put(ctx context.Context, key, value string) error {
	_, err := d.kv.Put(ctx, &rspb.PutRequest{Key: []byte(key), Value: []byte(value)})
	return err
}

func (d rawDoer) cput(ctx context.Context, key, value, expected string, absent, del bool) (cputResult, error) {
	req := &rspb.ConditionalPutRequest{Key: []byte(key), ExpectedValue: []byte(expected), ExpectAbsent: absent, Delete: del}
	if !del {
		req.Value = []byte(value)
	}
	r, err := d.kv.ConditionalPut(ctx, req)
	if err != nil {
		return cputResult{}, err
	}
	return cputResult{ok: r.Succeeded, actualExists: r.ActualExists, actual: string(r.ActualValue)}, nil
}

func (rawDoer) notApplied(err error) bool { return neverSent(err) }

type dbDoer struct{ db *client.DB }

func (d dbDoer) get(ctx context.Context, key string) (bool, string, error) {
	kv, err := d.db.Get(ctx, []byte(key))
	if errors.Is(err, client.ErrNotFound) {
		return false, "", nil
	}
	if err != nil {
		return false, "", err
	}
	return true, string(kv.Value), nil
}

func (d dbDoer) put(ctx context.Context, key, value string) error {
	_, err := d.db.Put(ctx, []byte(key), []byte(value))
	return err
}

func (d dbDoer) cput(ctx context.Context, key, value, expected string, absent, del bool) (cputResult, error) {
	cond := client.IfValue([]byte(expected))
	if absent {
		cond = client.IfAbsent()
	}
	var err error
	if del {
		err = d.db.ConditionalDelete(ctx, []byte(key), cond)
	} else {
		err = d.db.ConditionalPut(ctx, []byte(key), []byte(value), cond)
	}
	if cf, ok := errors.AsType[*client.ConditionFailedError](err); ok {
		return cputResult{actualExists: cf.ActualExists, actual: string(cf.ActualValue)}, nil
	}
	if err != nil {
		return cputResult{}, err
	}
	return cputResult{ok: true}, nil
}

func (dbDoer) notApplied(err error) bool { return dbWriteNotApplied(err) }

// dbWriteNotApplied: a client.DB write error that says the write did not
// apply. The client says so with two codes: Unavailable (no replica served
// it and no attempt may have applied: a write that may have is reported
// Ambiguous instead) and InvalidArgument (refused before anything was
// written). Every other error may hide an applied write: Ambiguous, and
// DeadlineExceeded and Canceled too (the context can end while an attempt
// is in flight, before the client has marked it as possibly applied), Closed
// (a call cut by Close), and codes the client passes on from a node
// (Unknown, Internal, FailedPrecondition, ...). A ConditionFailedError is
// not an error here: it is an answer (the condition did not hold).
func dbWriteNotApplied(err error) bool {
	e, ok := errors.AsType[*client.Error](err)
	return ok && (e.Code == client.Unavailable || e.Code == client.InvalidArgument)
}

// neverSent: err is the client's own failure to connect to the node it
// chose, so the request never left the client. gRPC says so with an
// Unavailable status whose message is the connection error itself. A
// node's answer that merely quotes a dial error (a gateway that could not
// reach the leaseholder it had already sent an attempt to) does not count:
// the write may have applied. Treating such answers as never sent once
// dropped a conditional delete that had applied, so a later read of the
// deleted key looked non-linearizable.
func neverSent(err error) bool {
	st, ok := status.FromError(err)
	return err != nil && ok && st.Code() == codes.Unavailable &&
		strings.HasPrefix(st.Message(), "connection error:") && strings.Contains(st.Message(), "Error while dialing")
}

// Stop stops the clients, waits for them and closes their client.DBs
// (idempotent).
func (l *ClientLoad) Stop() {
	l.once.Do(func() {
		close(l.done)
		l.wg.Wait()
		for _, db := range l.dbs {
			db.Close()
		}
	})
}

// History returns the operations after Stop, the ambiguous ones ending
// now (they may take effect any time until the end).
func (l *ClientLoad) History() []porcupine.Operation {
	l.mu.Lock()
	defer l.mu.Unlock()
	end := time.Since(l.start).Nanoseconds() + 1
	for i := range l.ops {
		if l.ops[i].Return < 0 {
			l.ops[i].Return = end
		}
	}
	return l.ops
}

// Stats are the operation counts so far.
func (l *ClientLoad) Stats() ClientStats {
	l.mu.Lock()
	ops, via := len(l.ops), l.viaPreferred
	l.mu.Unlock()
	st := ClientStats{Ops: ops, Ambiguous: int(l.ambiguous.Load()), Reads: int(l.reads.Load()), FailedReads: int(l.failedReads.Load()),
		FailedWrites: int(l.failedWrites.Load()), CondDeletes: int(l.cdels.Load()), CondDeletesOK: int(l.cdelsOK.Load()), ViaPreferred: via}
	for _, db := range l.dbs {
		r := db.Stats()
		st.Routing.Attempts += r.Attempts
		st.Routing.Redirects += r.Redirects
		st.Routing.StaleRanges += r.StaleRanges
		st.Routing.TransportFailures += r.TransportFailures
		st.Routing.RoutingLookups += r.RoutingLookups
	}
	return st
}

// clientLoad, startClients, stop and history are the harness's names for
// the same load.
type clientLoad = ClientLoad

func startClients(ctx context.Context, open DBOpener, keys []string, n int, seed int64, start time.Time) (*clientLoad, error) {
	return StartDBClients(ctx, open, ClientOptions{Keys: keys, Clients: n, Seed: seed, Start: start})
}

func (l *ClientLoad) stop() { l.Stop() }

// history is History, with res's operation counts filled in.
func (l *ClientLoad) history(res *Result) []porcupine.Operation {
	ops := l.History()
	st := l.Stats()
	res.Ops, res.Ambiguous, res.FailedWrites, res.Routing = st.Ops, st.Ambiguous, st.FailedWrites, st.Routing
	res.Reads, res.FailedReads = st.Reads, st.FailedReads
	res.CondDeletes, res.CondDeletesOK = st.CondDeletes, st.CondDeletesOK
	return ops
}
