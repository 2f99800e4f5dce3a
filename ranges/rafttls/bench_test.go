package rafttls

import (
	"sync/atomic"
	"testing"
	"time"

	pb "github.com/lni/dragonboat/v4/raftpb"

	"github.com/rangestore/rangestore/security"
)

// BenchmarkSendMessageBatch measures SendMessageBatch over loopback
// mutual TLS 1.3, end to end: the timed loop sends b.N batches on one
// connection and then waits until the receiver decoded and handled all
// of them. Bytes/op is the marshaled batch; allocations include the
// receiver's decoding.
func BenchmarkSendMessageBatch(b *testing.B) {
	for _, bc := range []struct {
		name             string
		msgs, entryBytes int
	}{
		{"heartbeat", 1, 0},
		{"16x256B", 16, 256},
		{"4x16KiB", 4, 16 << 10},
		{"1x1MiB", 1, 1 << 20},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p := newPKI(b)
			var got atomic.Int64
			signal := make(chan struct{}, 1)
			recv := New(nodeConfig(b, p.manager(b, security.NodeUser), &logBuffer{}))
			addr := freeAddr(b)
			rt := recv.Create(configFor(addr), func(pb.MessageBatch) {
				got.Add(1)
				select {
				case signal <- struct{}{}:
				default:
				}
			}, func(pb.Chunk) bool { return true })
			if err := rt.Start(); err != nil {
				b.Fatal(err)
			}
			defer rt.Close()
			sender := startSecureNode(b, p.manager(b, security.NodeUser))
			conn, err := sender.tr.GetConnection(ctxTimeout(b, 10*time.Second), addr)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			batch := testBatch(sender.addr, bc.msgs, bc.entryBytes)
			b.SetBytes(int64(batch.Size()))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if err := conn.SendMessageBatch(batch); err != nil {
					b.Fatal(err)
				}
			}
			deadline := time.NewTimer(time.Minute)
			defer deadline.Stop()
			for got.Load() < int64(b.N) {
				select {
				case <-signal:
				case <-deadline.C:
					b.Fatalf("after a minute the receiver handled %d of %d batches", got.Load(), b.N)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "batches/s")
		})
	}
}
