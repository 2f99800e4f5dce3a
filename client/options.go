package client

import (
	"io"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/rangestore/rangestore/proto/rspb"
)

// Defaults of the options.
const (
	// DefaultTimeout bounds a call whose context has no deadline.
	DefaultTimeout = 30 * time.Second
	// DefaultMaxAttempts is the retry budget: the most attempts (RPCs to a
	// node) one range's part of a call makes.
	DefaultMaxAttempts = 100
	// DefaultAttemptTimeout bounds one attempt at one node.
	DefaultAttemptTimeout = 5 * time.Second
	// DefaultMinBackoff, DefaultMaxBackoff bound the wait between rounds
	// of attempts (doubling, with jitter).
	DefaultMinBackoff = 10 * time.Millisecond
	DefaultMaxBackoff = 500 * time.Millisecond
	// DefaultKeepaliveTime, DefaultKeepaliveTimeout: the client pings a
	// connection idle this long (never more often than the nodes allow:
	// 10 s) and drops it when the ping is not answered in time.
	DefaultKeepaliveTime    = 20 * time.Second
	DefaultKeepaliveTimeout = 10 * time.Second
	// DefaultMaxMessageSize bounds the messages of a call both ways (the
	// nodes' own limit is about 10 MiB).
	DefaultMaxMessageSize = 64 << 20
	// minKeepaliveTime is the nodes' keepalive enforcement (a client
	// pinging more often is sent GOAWAY).
	minKeepaliveTime = 10 * time.Second
)

// RetryPolicy bounds the retries of a call. Zero fields take the defaults.
type RetryPolicy struct {
	// MaxAttempts: the most attempts one range's part of a call makes
	// (every RPC to a node counts, redirects included).
	MaxAttempts int
	// AttemptTimeout bounds one attempt at one node; a write cut short by
	// it is retried with the same proposal identity.
	AttemptTimeout time.Duration
	// MinBackoff, MaxBackoff: the wait after a round in which no replica
	// served starts at MinBackoff and doubles up to MaxBackoff.
	MinBackoff, MaxBackoff time.Duration
}

// Option configures Open.
type Option func(*config)

type config struct {
	creds        credentials.TransportCredentials
	dialOpts     []grpc.DialOption
	retry        RetryPolicy
	timeout      time.Duration
	log          *slog.Logger
	locality     []string
	connsPerNode int
	keepalive    keepalive.ClientParameters
	routingBatch int32
}

func defaultConfig() config {
	return config{
		retry: RetryPolicy{MaxAttempts: DefaultMaxAttempts, AttemptTimeout: DefaultAttemptTimeout,
			MinBackoff: DefaultMinBackoff, MaxBackoff: DefaultMaxBackoff},
		timeout:      DefaultTimeout,
		log:          slog.New(slog.NewTextHandler(io.Discard, nil)),
		connsPerNode: 1,
		keepalive:    keepalive.ClientParameters{Time: DefaultKeepaliveTime, Timeout: DefaultKeepaliveTimeout, PermitWithoutStream: true},
		routingBatch: 64,
	}
}

// WithTransportCredentials makes every connection use creds (TLS: a
// security.Manager's ClientCredentials() carries a client certificate).
// Without it connections are plaintext, for clusters started --insecure.
func WithTransportCredentials(creds credentials.TransportCredentials) Option {
	return func(c *config) { c.creds = creds }
}

// WithDialOptions adds gRPC dial options to every connection (after the
// client's own: credentials, keepalive, message sizes, reconnect backoff).
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(c *config) { c.dialOpts = append(c.dialOpts, opts...) }
}

// WithRetryPolicy sets the retry budget and backoff (zero fields keep the
// defaults).
func WithRetryPolicy(p RetryPolicy) Option {
	return func(c *config) {
		if p.MaxAttempts != 0 {
			c.retry.MaxAttempts = p.MaxAttempts
		}
		if p.AttemptTimeout != 0 {
			c.retry.AttemptTimeout = p.AttemptTimeout
		}
		if p.MinBackoff != 0 {
			c.retry.MinBackoff = p.MinBackoff
		}
		if p.MaxBackoff != 0 {
			c.retry.MaxBackoff = p.MaxBackoff
		}
	}
}

// WithTimeout bounds every call whose context has no deadline (default
// DefaultTimeout).
func WithTimeout(d time.Duration) Option {
	return func(c *config) { c.timeout = d }
}

// WithLogger logs the client's routing events (cache refreshes, redirects,
// failovers) at debug level, failures at warn (default: discarded).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l != nil {
			c.log = l
		}
	}
}

// WithLocality gives the client's locality tiers, widest first, as
// "key=value" (e.g. "region=eu", "zone=eu-1a"): reads that need not go to
// the leaseholder (BoundedStaleness, Causal, sessions) go to the nearest
// replica.
func WithLocality(tiers ...string) Option {
	return func(c *config) { c.locality = append(c.locality, tiers...) }
}

// WithConnectionsPerNode opens n connections to each node and spreads
// calls over them (default 1; more helps at high concurrency).
func WithConnectionsPerNode(n int) Option {
	return func(c *config) { c.connsPerNode = n }
}

// WithKeepalive sets the client's keepalive pings: after time idle, a ping
// that must be answered within timeout (time at least 10 s, the nodes'
// enforcement minimum).
func WithKeepalive(time, timeout time.Duration) Option {
	return func(c *config) { c.keepalive.Time, c.keepalive.Timeout = time, timeout }
}

// validate checks the options: an InvalidArgument naming the option.
func (c *config) validate() error {
	r := c.retry
	switch {
	case r.MaxAttempts < 1:
		return invalidf("open", "WithRetryPolicy: MaxAttempts %d: must be at least 1", r.MaxAttempts)
	case r.AttemptTimeout < 0:
		return invalidf("open", "WithRetryPolicy: AttemptTimeout %v: must be positive", r.AttemptTimeout)
	case r.MinBackoff < 0 || r.MaxBackoff < r.MinBackoff:
		return invalidf("open", "WithRetryPolicy: backoff %v..%v: need 0 < MinBackoff <= MaxBackoff", r.MinBackoff, r.MaxBackoff)
	case c.timeout <= 0:
		return invalidf("open", "WithTimeout %v: must be positive", c.timeout)
	case c.connsPerNode < 1 || c.connsPerNode > 64:
		return invalidf("open", "WithConnectionsPerNode %d: must be 1 to 64", c.connsPerNode)
	case c.keepalive.Time < minKeepaliveTime:
		return invalidf("open", "WithKeepalive: time %v: at least %v (nodes send GOAWAY to clients pinging more often)", c.keepalive.Time, minKeepaliveTime)
	case c.keepalive.Timeout <= 0:
		return invalidf("open", "WithKeepalive: timeout %v: must be positive", c.keepalive.Timeout)
	}
	for i, t := range c.locality {
		k, v, ok := strings.Cut(t, "=")
		if !ok || k == "" || v == "" {
			return invalidf("open", "WithLocality: tier %d %q: want key=value", i, t)
		}
	}
	return nil
}

func (c *config) localityTiers() []*rspb.LocalityTier {
	var out []*rspb.LocalityTier
	for _, t := range c.locality {
		k, v, _ := strings.Cut(t, "=")
		out = append(out, &rspb.LocalityTier{Key: k, Value: v})
	}
	return out
}
