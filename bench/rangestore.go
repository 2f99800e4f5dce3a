package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/rangestore/rangestore/proto/rspb"
)

// RangestoreDriver talks to a rangestore cluster through its gRPC KV API,
// spreading requests round-robin over every given node (each node's
// gateway routes to the range's leader).
type RangestoreDriver struct {
	conns   []*grpc.ClientConn
	clients []rspb.KVClient
	next    atomic.Uint64
	// maxStaleness > 0: Gets and Scans are BOUNDED_STALENESS reads (any
	// replica at its closed timestamp, if that is at most this old).
	maxStaleness time.Duration
}

// SetBoundedStaleness makes every later Get and Scan a BOUNDED_STALENESS
// read with this max_staleness (0: STRONG, the default). Set it before
// the driver is shared between goroutines.
func (d *RangestoreDriver) SetBoundedStaleness(maxStaleness time.Duration) {
	d.maxStaleness = maxStaleness
}

// readMode returns the read mode and max_staleness of the driver's reads.
func (d *RangestoreDriver) readMode() (rspb.ReadMode, *durationpb.Duration) {
	if d.maxStaleness <= 0 {
		return rspb.ReadMode_STRONG, nil
	}
	return rspb.ReadMode_BOUNDED_STALENESS, durationpb.New(d.maxStaleness)
}

// NewRangestoreDriver dials every host connsPerHost times (default 1),
// in plaintext unless opts (applied after the defaults) say otherwise:
// grpc.WithTransportCredentials(m.ClientCredentials()) dials a secure
// cluster with a security.Manager's client certificate.
func NewRangestoreDriver(hosts []string, connsPerHost int, opts ...grpc.DialOption) (*RangestoreDriver, error) {
	if len(hosts) == 0 {
		return nil, errors.New("no hosts")
	}
	if connsPerHost <= 0 {
		connsPerHost = 1
	}
	d := &RangestoreDriver{}
	for i := 0; i < connsPerHost; i++ {
		for _, h := range hosts {
			c, err := grpc.NewClient(h, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64 << 20))}, opts...)...)
			if err != nil {
				d.Close()
				return nil, fmt.Errorf("dial %s: %w", h, err)
			}
			d.conns = append(d.conns, c)
			d.clients = append(d.clients, rspb.NewKVClient(c))
		}
	}
	return d, nil
}

func (d *RangestoreDriver) client() rspb.KVClient {
	return d.clients[(d.next.Add(1)-1)%uint64(len(d.clients))]
}

func (d *RangestoreDriver) Get(ctx context.Context, key []byte) (bool, error) {
	mode, staleness := d.readMode()
	r, err := d.client().Get(ctx, &rspb.GetRequest{Key: key, ReadMode: mode, MaxStaleness: staleness})
	if err != nil {
		return false, err
	}
	return r.Found, nil
}

func (d *RangestoreDriver) Put(ctx context.Context, key, value []byte) error {
	_, err := d.client().Put(ctx, &rspb.PutRequest{Key: key, Value: value})
	return err
}

func (d *RangestoreDriver) Scan(ctx context.Context, start []byte, limit int) (int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	mode, staleness := d.readMode()
	st, err := d.client().Scan(ctx, &rspb.ScanRequest{StartKey: start, Limit: int64(limit), ReadMode: mode, MaxStaleness: staleness})
	if err != nil {
		return 0, err
	}
	n := 0
	for {
		m, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		n += len(m.Kvs)
	}
}

// PutBatch writes the keys with one Batch request (atomic per range).
func (d *RangestoreDriver) PutBatch(ctx context.Context, keys, values [][]byte) error {
	req := &rspb.BatchRequest{}
	for i := range keys {
		req.Requests = append(req.Requests, &rspb.RequestUnion{Value: &rspb.RequestUnion_Put{Put: &rspb.PutRequest{Key: keys[i], Value: values[i]}}})
	}
	_, err := d.client().Batch(ctx, req)
	return err
}

func (d *RangestoreDriver) Close() error {
	var first error
	for _, c := range d.conns {
		if err := c.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
