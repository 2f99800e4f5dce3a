package chaos

import (
	"context"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"time"

	"github.com/rangestore/rangestore/client"
	"github.com/rangestore/rangestore/proto/rspb"
)

// loader writes 1 KiB values under keys spread over the whole user keyspace
// (so every range grows and splits) through a client.DB, and remembers
// what was acknowledged.
type loader struct {
	db    *client.DB
	stop  chan struct{}
	wg    sync.WaitGroup
	once  sync.Once
	mu    sync.Mutex
	acked map[string]string

	lastSplitCheck time.Time // wantsMoreSplits, called from RunHistory's loop only
	moreSplits     bool
}

const loaderAlphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

func startLoader(ctx context.Context, tgt target, seed int64) (*loader, error) {
	octx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	db, err := client.Open(octx, tgt.clientAddrs(), tgt.clientOptions()...)
	if err != nil {
		return nil, fmt.Errorf("chaos: loader: %w", err)
	}
	l := &loader{db: db, stop: make(chan struct{}), acked: map[string]string{}}
	for w := 0; w < 2; w++ {
		rng := rand.New(rand.NewSource(seed*7 + int64(w)))
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for n := 0; ; n++ {
				select {
				case <-l.stop:
					return
				default:
				}
				// "L" keys never collide with the clients' keys.
				k := fmt.Sprintf("%cL%d-%06d", loaderAlphabet[rng.Intn(len(loaderAlphabet))], w, n)
				v := fmt.Sprintf("%s=%s", k, strings.Repeat("x", 1000))
				actx, cancel := context.WithTimeout(ctx, 3*time.Second)
				_, err := l.db.Put(actx, []byte(k), []byte(v))
				cancel()
				if err == nil {
					l.mu.Lock()
					l.acked[k] = v
					l.mu.Unlock()
				}
			}
		}()
	}
	return l, nil
}

// finish stops the loader, reads every acknowledged key back through every
// node (raw gRPC: each node's own routing) and counts the ranges in meta.
func (l *loader) finish(ctx context.Context, tgt target, res *Result) error {
	l.halt()
	res.Loaded = len(l.acked)
	for k, v := range l.acked {
		for i := 0; i < tgt.NumNodes(); i++ {
			// A failed read (a restarted node's connection still backing
			// off) is retried; only a missing or different value is wrong.
			var g *rspb.GetResponse
			var err error
			for deadline := time.Now().Add(30 * time.Second); ; {
				actx, cancel := context.WithTimeout(ctx, 5*time.Second)
				g, err = tgt.KV(i).Get(actx, &rspb.GetRequest{Key: []byte(k)})
				cancel()
				if err == nil || time.Now().After(deadline) {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err != nil || !g.Found || string(g.Kv.Value) != v {
				if res.LoadedWrong < 5 {
					got := "<none>"
					if g != nil && g.Found {
						got = fmt.Sprintf("%.20q", g.Kv.Value)
					}
					res.WrongSamples = append(res.WrongSamples, fmt.Sprintf("%s via node %d: found=%v value=%s err=%v", k, i, g.GetFound(), got, err))
				}
				res.LoadedWrong++
				break
			}
		}
	}
	it := tgt.(*inProcTarget)
	descs, err := it.Node(0).MetaRanges(ctx)
	if err != nil {
		return err
	}
	res.RangesAfter = len(descs)
	return nil
}

// halt stops the writers and closes the DB (idempotent).
func (l *loader) halt() {
	l.once.Do(func() {
		close(l.stop)
		l.wg.Wait()
		l.db.Close()
	})
}

// wantsMoreSplits: the history has run its Duration, but the ranges have not
// yet grown by o.MinSplits and o.MaxDuration has not passed. It looks at
// meta at most once a second (between looks it answers as it did last).
func (l *loader) wantsMoreSplits(ctx context.Context, tgt target, o Options, start time.Time, before int) bool {
	if l == nil || o.MinSplits <= 0 {
		return false
	}
	max := o.MaxDuration
	if max <= 0 {
		max = 3 * o.Duration
	}
	if time.Since(start) >= max {
		return false
	}
	if time.Since(l.lastSplitCheck) < time.Second {
		return l.moreSplits
	}
	l.lastSplitCheck = time.Now()
	it := tgt.(*inProcTarget)
	var descs []*rspb.RangeDescriptor
	err := fmt.Errorf("every node is stopped")
	for i := 0; i < it.NumNodes() && err != nil; i++ {
		if n := it.Node(i); n != nil { // nil while a restart fault has it stopped
			descs, err = n.MetaRanges(ctx)
		}
	}
	if err != nil {
		return true // look again later (MaxDuration bounds it)
	}
	l.moreSplits = len(descs)-before < o.MinSplits
	if !l.moreSplits {
		o.Logf("t=%.1fs: %d splits, enough", time.Since(start).Seconds(), len(descs)-before)
	}
	return l.moreSplits
}
