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

	"github.com/rangestore/rangestore/client"
	"github.com/rangestore/rangestore/proto/rspb"
)

// RangestoreOptions configure OpenRangestore.
type RangestoreOptions struct {
	// ConnsPerHost: gRPC connections to each node (default 1); on the
	// client path client.WithConnectionsPerNode.
	ConnsPerHost int
	// DialOptions are applied to every connection after the driver's own
	// (plaintext by default): grpc.WithTransportCredentials with a
	// security.Manager's ClientCredentials() dials a secure cluster.
	DialOptions []grpc.DialOption
	// RawGRPC sends every request as a raw KV RPC to the hosts in turn,
	// each node's gateway routing it (and forwarding it to the
	// leaseholder when the lease is elsewhere: a second gRPC hop), instead
	// of through client/ (straight to the leaseholder).
	RawGRPC bool
	// Localities (client path): one client.DB per entry, each with these
	// locality tiers (client.WithLocality); calls go to the DBs in turn,
	// so that bounded-staleness reads are spread over the replicas
	// nearest to each. Empty: one DB without a locality.
	Localities [][]string
	// ClientOptions are added to every client.Open (client path).
	ClientOptions []client.Option
}

// RangestoreDriver is the driver of a rangestore cluster. By default
// (OpenRangestore) it sends requests through client/, which routes each
// straight to the leaseholder of its range; with RawGRPC (and from
// NewRangestoreDriver) it sends raw KV RPCs round-robin over every given
// node, each node's gateway routing them.
type RangestoreDriver struct {
	// Raw gRPC path.
	conns   []*grpc.ClientConn
	clients []rspb.KVClient
	// Client path.
	dbs []*client.DB

	next atomic.Uint64
	// maxStaleness > 0: Gets and Scans are BOUNDED_STALENESS reads (any
	// replica at its closed timestamp, if that is at most this old).
	maxStaleness time.Duration
	readOpts     []client.ReadOption
}

// SetBoundedStaleness makes every later Get and Scan a BOUNDED_STALENESS
// read with this max_staleness (0: STRONG, the default). Set it before
// the driver is shared between goroutines.
func (d *RangestoreDriver) SetBoundedStaleness(maxStaleness time.Duration) {
	d.maxStaleness = maxStaleness
	d.readOpts = nil
	if maxStaleness > 0 {
		d.readOpts = []client.ReadOption{client.BoundedStaleness(maxStaleness)}
	}
}

// RawGRPC reports whether the driver sends raw KV RPCs (not client/).
func (d *RangestoreDriver) RawGRPC() bool { return len(d.dbs) == 0 }

// ClientStats sums the routing counters of the driver's client.DBs
// (false on the raw gRPC path).
func (d *RangestoreDriver) ClientStats() (client.Stats, bool) {
	var s client.Stats
	for _, db := range d.dbs {
		x := db.Stats()
		s.Attempts += x.Attempts
		s.Redirects += x.Redirects
		s.StaleRanges += x.StaleRanges
		s.TransportFailures += x.TransportFailures
		s.RoutingLookups += x.RoutingLookups
	}
	return s, len(d.dbs) > 0
}

// readMode returns the read mode and max_staleness of the driver's raw
// reads.
func (d *RangestoreDriver) readMode() (rspb.ReadMode, *durationpb.Duration) {
	if d.maxStaleness <= 0 {
		return rspb.ReadMode_STRONG, nil
	}
	return rspb.ReadMode_BOUNDED_STALENESS, durationpb.New(d.maxStaleness)
}

// OpenRangestore returns a driver of the cluster the hosts belong to:
// through client.Open (which reads the routing table, so a wrong address
// or certificate fails here; ctx bounds the opening only), or with
// o.RawGRPC over raw connections to every host.
func OpenRangestore(ctx context.Context, hosts []string, o RangestoreOptions) (*RangestoreDriver, error) {
	if o.RawGRPC {
		if len(o.Localities) > 0 {
			return nil, errors.New("rangestore driver: Localities need the client path (RawGRPC is set)")
		}
		return NewRangestoreDriver(hosts, o.ConnsPerHost, o.DialOptions...)
	}
	if len(hosts) == 0 {
		return nil, errors.New("rangestore driver: no hosts")
	}
	conns := o.ConnsPerHost
	if conns <= 0 {
		conns = 1
	}
	locs := o.Localities
	if len(locs) == 0 {
		locs = [][]string{nil}
	}
	d := &RangestoreDriver{}
	for i, loc := range locs {
		opts := append([]client.Option{client.WithConnectionsPerNode(conns), client.WithDialOptions(o.DialOptions...)}, o.ClientOptions...)
		if len(loc) > 0 {
			opts = append(opts, client.WithLocality(loc...))
		}
		db, err := client.Open(ctx, hosts, opts...)
		if err != nil {
			_ = d.Close()
			if len(o.Localities) > 0 {
				return nil, fmt.Errorf("rangestore driver: client %d (locality %v): %w", i, loc, err)
			}
			return nil, fmt.Errorf("rangestore driver: %w", err)
		}
		d.dbs = append(d.dbs, db)
	}
	return d, nil
}

// NewRangestoreDriver returns a raw gRPC driver: it dials every host
// connsPerHost times (default 1), in plaintext unless opts (applied after
// the defaults) say otherwise: grpc.WithTransportCredentials(
// m.ClientCredentials()) dials a secure cluster with a security.Manager's
// client certificate. OpenRangestore gives the client/ driver.
func NewRangestoreDriver(hosts []string, connsPerHost int, opts ...grpc.DialOption) (*RangestoreDriver, error) {
	if len(hosts) == 0 {
		return nil, errors.New("rangestore driver: no hosts")
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
				_ = d.Close()
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

// db returns the client.DB of the next call (nil on the raw path).
func (d *RangestoreDriver) db() *client.DB {
	switch len(d.dbs) {
	case 0:
		return nil
	case 1:
		return d.dbs[0]
	}
	return d.dbs[(d.next.Add(1)-1)%uint64(len(d.dbs))]
}

func (d *RangestoreDriver) Get(ctx context.Context, key []byte) (bool, error) {
	if db := d.db(); db != nil {
		_, err := db.Get(ctx, key, d.readOpts...)
		if errors.Is(err, client.ErrNotFound) {
			return false, nil
		}
		return err == nil, err
	}
	mode, staleness := d.readMode()
	r, err := d.client().Get(ctx, &rspb.GetRequest{Key: key, ReadMode: mode, MaxStaleness: staleness})
	if err != nil {
		return false, err
	}
	return r.Found, nil
}

func (d *RangestoreDriver) Put(ctx context.Context, key, value []byte) error {
	if db := d.db(); db != nil {
		_, err := db.Put(ctx, key, value)
		return err
	}
	_, err := d.client().Put(ctx, &rspb.PutRequest{Key: key, Value: value})
	return err
}

func (d *RangestoreDriver) Scan(ctx context.Context, start []byte, limit int) (int, error) {
	if db := d.db(); db != nil {
		opts := append([]client.ReadOption{client.Limit(int64(limit))}, d.readOpts...)
		n := 0
		for _, err := range db.Scan(ctx, start, nil, opts...) {
			if err != nil {
				return n, err
			}
			n++
		}
		return n, nil
	}
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

// PutBatch writes the keys with one Batch request (atomic per range; the
// client splits it per range and sends the parts in parallel).
func (d *RangestoreDriver) PutBatch(ctx context.Context, keys, values [][]byte) error {
	if db := d.db(); db != nil {
		b := new(client.Batch)
		for i := range keys {
			b.Put(keys[i], values[i])
		}
		_, err := db.Batch(ctx, b)
		return err
	}
	req := &rspb.BatchRequest{}
	for i := range keys {
		req.Requests = append(req.Requests, &rspb.RequestUnion{Value: &rspb.RequestUnion_Put{Put: &rspb.PutRequest{Key: keys[i], Value: values[i]}}})
	}
	_, err := d.client().Batch(ctx, req)
	return err
}

func (d *RangestoreDriver) Close() error {
	for _, db := range d.dbs {
		db.Close()
	}
	var first error
	for _, c := range d.conns {
		if err := c.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
