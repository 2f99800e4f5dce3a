package chaos

import (
	"context"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anishathalye/porcupine"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rangestore/rangestore/proto/rspb"
)

// KVNodes is what the porcupine clients need of a cluster: a KV client per
// node (ProcCluster and the in-process targets have one).
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
// delete on a few keys through random nodes, recording every operation
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

	ambiguous, failedReads, reads, cdels, cdelsOK atomic.Int64
}

// ClientStats are a ClientLoad's operation counts.
type ClientStats struct {
	Ops, Ambiguous, Reads, FailedReads, CondDeletes, CondDeletesOK int
	// ViaPreferred: operations recorded through the node PreferReads
	// named, since it named it.
	ViaPreferred int
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
// listed (none: every node), e.g. all but a node about to be killed.
func (l *ClientLoad) SetTargets(nodes []int) {
	l.mu.Lock()
	l.targets = append([]int(nil), nodes...)
	l.mu.Unlock()
}

// PreferReads sends half the reads through node i from now on, and counts
// the operations recorded through it from now on (ClientStats.ViaPreferred).
func (l *ClientLoad) PreferReads(i int) {
	l.mu.Lock()
	l.preferred, l.viaPreferred = i, 0
	l.mu.Unlock()
}

// StartClients starts o.Clients clients on o.Keys through the nodes of
// kvs. A failed read is left out (it has no effect); a failed write is
// ambiguous (it may have happened) unless it was never sent.
func StartClients(ctx context.Context, kvs KVNodes, o ClientOptions) *ClientLoad {
	start, timeout := o.Start, o.Timeout
	if start.IsZero() {
		start = time.Now()
	}
	if timeout <= 0 {
		timeout = 3 * time.Second
	}
	keys := o.Keys
	l := &ClientLoad{start: start, done: make(chan struct{}), preferred: -1}
	for c := 0; c < o.Clients; c++ {
		crng := rand.New(rand.NewSource(o.Seed*1000 + int64(c)))
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
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
				via, preferred := l.pick(crng, kvs.NumNodes())
				p := crng.Intn(10)
				if p < 4 && preferred >= 0 && crng.Intn(2) == 0 {
					via = preferred // half the reads (an extra draw only with a preferred node)
				}
				kvc := kvs.KV(via)
				in := Input{Key: k}
				call := time.Since(start).Nanoseconds()
				octx, ocancel := context.WithTimeout(ctx, timeout)
				var out Output
				var err error
				switch {
				case p < 4:
					in.Op = "get"
					var g *rspb.GetResponse
					g, err = kvc.Get(octx, &rspb.GetRequest{Key: []byte(k)})
					if err == nil {
						out = Output{Found: g.Found, Value: string(g.GetKv().GetValue())}
						if g.Found {
							seen[k] = out.Value
						} else {
							delete(seen, k)
						}
					}
				case p < 7:
					in.Op, in.Value = "put", fmt.Sprintf("c%d-%d", c, seq)
					_, err = kvc.Put(octx, &rspb.PutRequest{Key: []byte(k), Value: []byte(in.Value)})
				case p < 8:
					// Conditional delete: delete the key if it still holds
					// the value this client last saw (or, if it saw none,
					// if it is absent: a no-op that still checks).
					in.Op, in.Expected = "cdel", seen[k]
					var r *rspb.ConditionalPutResponse
					req := &rspb.ConditionalPutRequest{Key: []byte(k), ExpectedValue: []byte(in.Expected), Delete: true}
					if in.Expected == "" {
						req.ExpectAbsent, in.Absent = true, true
					}
					r, err = kvc.ConditionalPut(octx, req)
					if err == nil {
						out.OK = r.Succeeded
						switch {
						case r.Succeeded || !r.ActualExists:
							delete(seen, k)
						default:
							seen[k] = string(r.ActualValue)
						}
					}
				default:
					in.Op, in.Value, in.Expected = "cas", fmt.Sprintf("c%d-%d", c, seq), seen[k]
					var r *rspb.ConditionalPutResponse
					req := &rspb.ConditionalPutRequest{Key: []byte(k), Value: []byte(in.Value), ExpectedValue: []byte(in.Expected)}
					if in.Expected == "" {
						req.ExpectAbsent, in.Absent = true, true
					}
					r, err = kvc.ConditionalPut(octx, req)
					if err == nil {
						out.OK = r.Succeeded
						if !r.Succeeded && r.ActualExists {
							seen[k] = string(r.ActualValue)
						}
					}
				}
				ocancel()
				ret := time.Since(start).Nanoseconds()
				if in.Op == "get" {
					l.reads.Add(1)
				}
				if in.Op == "cdel" && !neverSent(err) {
					l.cdels.Add(1)
					if err == nil && out.OK {
						l.cdelsOK.Add(1)
					}
				}
				if err != nil {
					// Back off a little, as a real client does (a stopped
					// node would otherwise be hammered at full speed).
					time.Sleep(20 * time.Millisecond)
					if in.Op == "get" {
						l.failedReads.Add(1) // a failed read has no effect: leave it out
						continue
					}
					if neverSent(err) {
						continue // no effect
					}
					out.Unknown = true
					l.ambiguous.Add(1)
					ret = -1 // patched to the end of the history
				}
				l.record(porcupine.Operation{ClientId: c, Input: in, Call: call, Output: out, Return: ret}, via == preferred)
			}
		}()
	}
	return l
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

// Stop stops the clients and waits for them (idempotent).
func (l *ClientLoad) Stop() {
	l.once.Do(func() {
		close(l.done)
		l.wg.Wait()
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
	return ClientStats{Ops: ops, Ambiguous: int(l.ambiguous.Load()), Reads: int(l.reads.Load()), FailedReads: int(l.failedReads.Load()),
		CondDeletes: int(l.cdels.Load()), CondDeletesOK: int(l.cdelsOK.Load()), ViaPreferred: via}
}

// clientLoad, startClients, stop and history are the harness's names for
// the same load.
type clientLoad = ClientLoad

func startClients(ctx context.Context, kvs KVNodes, keys []string, n int, seed int64, start time.Time) *clientLoad {
	return StartClients(ctx, kvs, ClientOptions{Keys: keys, Clients: n, Seed: seed, Start: start})
}

func (l *ClientLoad) stop() { l.Stop() }

// history is History, with res's operation counts filled in.
func (l *ClientLoad) history(res *Result) []porcupine.Operation {
	ops := l.History()
	st := l.Stats()
	res.Ops, res.Ambiguous = st.Ops, st.Ambiguous
	res.Reads, res.FailedReads = st.Reads, st.FailedReads
	res.CondDeletes, res.CondDeletesOK = st.CondDeletes, st.CondDeletesOK
	return ops
}
