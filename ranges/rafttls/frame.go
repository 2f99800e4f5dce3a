package rafttls

import (
	"encoding/binary"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The wire format (doc.go). These are pure: no I/O, no clock.

const (
	// Version is the protocol version a connection's preamble carries.
	Version = 1

	// kindMessages and kindChunks are the two kinds of connection: one
	// carries pb.MessageBatch frames, the other pb.Chunk frames.
	kindMessages byte = 'm'
	kindChunks   byte = 'c'

	// preambleLen is the preamble a dialer writes after the handshake:
	// magic (4), version (1), kind (1).
	preambleLen = 6
	// ackByte is the server's one-byte answer to a preamble it accepts.
	ackByte byte = 0x06
	// frameHeaderLen is a frame's length prefix (big-endian uint32).
	frameHeaderLen = 4
)

// magic starts every connection's preamble.
var magic = [4]byte{'R', 'S', 'R', 'T'}

// MaxFrameSize bounds one frame (a marshaled message batch or snapshot
// chunk), sent or received. Dragonboat closes a batch before its
// messages' size upper bounds reach 64 MiB (its MaxMessageBatchSize),
// except a batch of one message, whose entries Raft caps at 64 MiB
// (MaxEntrySize) plus at least one entry; a snapshot chunk carries 2 MiB
// of data. Rangestore's proposals are a few MiB at most (ranges.Limits).
// The 32 MiB over 64 MiB is room for one message's overhead and entry.
const MaxFrameSize = 96 << 20

// appendPreamble appends the preamble of a connection of kind.
func appendPreamble(dst []byte, kind byte) []byte {
	dst = append(dst, magic[:]...)
	return append(dst, Version, kind)
}

// parsePreamble checks a connection's preamble and returns its kind.
func parsePreamble(b [preambleLen]byte) (byte, error) {
	if [4]byte(b[:4]) != magic {
		return 0, fmt.Errorf("not a rangestore Raft connection: preamble starts %q, want %q", b[:4], magic[:])
	}
	if b[4] != Version {
		return 0, fmt.Errorf("peer speaks Raft transport protocol version %d, this node version %d", b[4], Version)
	}
	switch k := b[5]; k {
	case kindMessages, kindChunks:
		return k, nil
	default:
		return 0, fmt.Errorf("unknown Raft connection kind %q (want %q for messages or %q for snapshot chunks)", k, kindMessages, kindChunks)
	}
}

// kindName names a connection kind in logs and errors.
func kindName(k byte) string {
	if k == kindChunks {
		return "snapshot"
	}
	return "messages"
}

// FrameTooLargeError is a frame over the limit, refused by its sender
// (nothing is written, the connection stays usable) or by its receiver
// (which closes the connection).
type FrameTooLargeError struct {
	Size, Limit int
}

func (e *FrameTooLargeError) Error() string {
	return fmt.Sprintf("rafttls: frame of %d bytes exceeds the max frame size of %d bytes (rafttls.MaxFrameSize)", e.Size, e.Limit)
}

// checkFrameSize refuses an empty frame (a marshaled batch or chunk is
// never empty) and one over limit.
func checkFrameSize(size uint64, limit int) error {
	if size == 0 {
		return fmt.Errorf("rafttls: empty frame (a frame carries a marshaled message batch or snapshot chunk)")
	}
	if size > uint64(limit) {
		return &FrameTooLargeError{Size: int(min(size, uint64(1<<62))), Limit: limit}
	}
	return nil
}

// putFrameHeader writes the length prefix of a frame of size bytes.
func putFrameHeader(b []byte, size int) { binary.BigEndian.PutUint32(b, uint32(size)) }

// frameSize reads a length prefix.
func frameSize(b []byte) uint64 { return uint64(binary.BigEndian.Uint32(b)) }

// checkAddress checks that addr is host:port as Dragonboat's NodeHost
// addresses are: a host (a name, an IP, or a bracketed IPv6 address) and a
// port of 1 to 65535.
func checkAddress(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("rafttls: Raft address %q is not host:port: %w", addr, err)
	}
	if host == "" {
		return fmt.Errorf("rafttls: Raft address %q has no host", addr)
	}
	if strings.ContainsAny(host, " \t\r\n/\\@") {
		return fmt.Errorf("rafttls: Raft address %q: host %q is not a host name or an IP", addr, host)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return fmt.Errorf("rafttls: Raft address %q: port %q is not a number from 1 to 65535", addr, port)
	}
	return nil
}

// logLimiter lets one log line through per interval and counts the
// lines it held back, so that a peer retrying with a bad certificate, or
// a port scanner, costs one line per interval rather than one per
// attempt.
type logLimiter struct {
	every time.Duration

	mu         sync.Mutex
	next       time.Time
	suppressed int
}

// allow reports whether a line may be logged at now, and if so how many
// were held back since the last one.
func (l *logLimiter) allow(now time.Time) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Before(l.next) {
		l.suppressed++
		return false, 0
	}
	l.next = now.Add(l.every)
	n := l.suppressed
	l.suppressed = 0
	return true, n
}
