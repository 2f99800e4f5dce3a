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

// kvNodes is what the porcupine clients need of a cluster: a KV client per
// node.
type kvNodes interface {
	NumNodes() int
	KV(i int) rspb.KVClient
}

// clientLoad is a set of porcupine clients doing get/put/cas/conditional
// delete on a few keys through random nodes, recording every operation
// for the linearizability check (KVModel). Its goroutines run until stop.
type clientLoad struct {
	start time.Time
	done  chan struct{}
	wg    sync.WaitGroup

	mu  sync.Mutex
	ops []porcupine.Operation

	ambiguous, failedReads, reads, cdels, cdelsOK atomic.Int64
}

func (l *clientLoad) record(op porcupine.Operation) {
	l.mu.Lock()
	l.ops = append(l.ops, op)
	l.mu.Unlock()
}

// startClients starts n clients on keys; client c draws its operations
// from a source seeded with seed*1000+c. Times are recorded relative to
// start. A failed read is left out (it has no effect); a failed write is
// ambiguous (it may have happened) unless it was never sent.
func startClients(ctx context.Context, kvs kvNodes, keys []string, n int, seed int64, start time.Time) *clientLoad {
	l := &clientLoad{start: start, done: make(chan struct{})}
	for c := 0; c < n; c++ {
		crng := rand.New(rand.NewSource(seed*1000 + int64(c)))
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			seen := map[string]string{}
			for seq := 0; ; seq++ {
				select {
				case <-l.done:
					return
				default:
				}
				k := keys[crng.Intn(len(keys))]
				kvc := kvs.KV(crng.Intn(kvs.NumNodes()))
				in := Input{Key: k}
				call := time.Since(start).Nanoseconds()
				octx, ocancel := context.WithTimeout(ctx, 3*time.Second)
				var out Output
				var err error
				switch p := crng.Intn(10); {
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
				l.record(porcupine.Operation{ClientId: c, Input: in, Call: call, Output: out, Return: ret})
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

// stop stops the clients and waits for them.
func (l *clientLoad) stop() {
	close(l.done)
	l.wg.Wait()
}

// history returns the operations after stop, the ambiguous ones ending
// now (they may take effect any time until the end), and fills res's
// operation counts.
func (l *clientLoad) history(res *Result) []porcupine.Operation {
	end := time.Since(l.start).Nanoseconds() + 1
	for i := range l.ops {
		if l.ops[i].Return < 0 {
			l.ops[i].Return = end
		}
	}
	res.Ops, res.Ambiguous = len(l.ops), int(l.ambiguous.Load())
	res.Reads, res.FailedReads = int(l.reads.Load()), int(l.failedReads.Load())
	res.CondDeletes, res.CondDeletesOK = int(l.cdels.Load()), int(l.cdelsOK.Load())
	return l.ops
}
