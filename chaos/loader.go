package chaos

import (
	"context"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"time"

	"github.com/rangestore/rangestore/proto/rspb"
)

// loader writes 1 KiB values under keys spread over the whole user keyspace
// (so every range grows and splits) and remembers what was acknowledged.
type loader struct {
	stop  chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	acked map[string]string
}

const loaderAlphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

func startLoader(ctx context.Context, tgt target, seed int64) *loader {
	l := &loader{stop: make(chan struct{}), acked: map[string]string{}}
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
				_, err := tgt.KV(rng.Intn(tgt.NumNodes())).Put(actx, &rspb.PutRequest{Key: []byte(k), Value: []byte(v)})
				cancel()
				if err == nil {
					l.mu.Lock()
					l.acked[k] = v
					l.mu.Unlock()
				}
			}
		}()
	}
	return l
}

// finish stops the loader, reads every acknowledged key back through every
// node and counts the ranges in meta.
func (l *loader) finish(ctx context.Context, tgt target, res *Result) error {
	close(l.stop)
	l.wg.Wait()
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
