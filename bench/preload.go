package bench

import (
	"context"
	"fmt"
	"math/rand"
	"sync"
	"time"
)

// Preload writes the keys of indexes [0, spec.Keys) (spec.Key) with random
// values of spec.ValueSize bytes using concurrency
// workers, in batches when the driver supports them. Failed writes are
// retried until ctx ends (a freshly started cluster may still be electing
// leaders).
func Preload(ctx context.Context, d Driver, spec Spec, concurrency int, seed int64) error {
	if concurrency <= 0 {
		concurrency = 16
	}
	const batch = 100
	bp, batched := d.(BatchPutter)
	step := uint64(1)
	if batched {
		step = batch
	}
	next := make(chan uint64)
	errc := make(chan error, concurrency)
	var wg sync.WaitGroup
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func(id int) {
			defer wg.Done()
			r := rand.New(rand.NewSource(seed ^ int64(id+1)*104729))
			for first := range next {
				end := first + step
				if end > spec.Keys {
					end = spec.Keys
				}
				var keys, vals [][]byte
				for i := first; i < end; i++ {
					v := make([]byte, spec.ValueSize)
					fillValue(r, v)
					keys = append(keys, spec.Key(i))
					vals = append(vals, v)
				}
				for attempt := 0; ; attempt++ {
					var err error
					actx, cancel := context.WithTimeout(ctx, 10*time.Second)
					if batched {
						err = bp.PutBatch(actx, keys, vals)
					} else {
						err = d.Put(actx, keys[0], vals[0])
					}
					cancel()
					if err == nil {
						break
					}
					if ctx.Err() != nil {
						errc <- fmt.Errorf("preload key %d: %w (last error: %w)", first, ctx.Err(), err)
						return
					}
					time.Sleep(time.Duration(min(attempt+1, 20)) * 50 * time.Millisecond)
				}
			}
		}(w)
	}
	var err error
feed:
	for i := uint64(0); i < spec.Keys; i += step {
		select {
		case next <- i:
		case err = <-errc:
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err != nil {
		return err
	}
	select {
	case err = <-errc:
	default:
	}
	return err
}
