package batcheval

import (
	"fmt"
	"reflect"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/rangestore/rangestore/proto/rspb"
)

// Span is the key span a request touches, in internal keys: the single key
// Key if Point, else [Key, EndKey) (an empty bound is open).
type Span struct {
	Key, EndKey []byte
	Point       bool
}

func pointSpan(k []byte) Span        { return Span{Key: k, Point: true} }
func keySpan(start, end []byte) Span { return Span{Key: start, EndKey: end} }

// Command is one request type as registered by its cmd_*.go file. Lookup
// returns it for a RequestUnion; its methods take that same RequestUnion.
type Command struct {
	name     string
	readOnly bool
	internal bool

	span       func(*rspb.RequestUnion) Span
	payload    func(*rspb.RequestUnion) (keys, values [][]byte)
	check      func(*rspb.RequestUnion, Limits) error
	asOf       func(*rspb.RequestUnion) *rspb.Timestamp
	since      func(*rspb.RequestUnion) *rspb.Timestamp
	minTS      func(*rspb.RequestUnion) *rspb.Timestamp
	toInternal func(*rspb.RequestUnion) *rspb.RequestUnion
	toClient   func(*rspb.ResponseUnion)
	clip       func(r *rspb.RequestUnion, start, end []byte) *rspb.RequestUnion
	merge      func(r *rspb.RequestUnion, parts []*rspb.ResponseUnion) *rspb.ResponseUnion
	eval       func(*Args, *rspb.RequestUnion) (*rspb.ResponseUnion, error)
}

// Name is the request type's field name in RequestUnion (and
// ResponseUnion), as client errors name it: "get", "conditional_put", ….
func (c *Command) Name() string { return c.name }

// ReadOnly reports whether the request only reads: it is served from a
// snapshot by the leaseholder, without Raft, under read latches.
func (c *Command) ReadOnly() bool { return c.readOnly }

// Internal reports whether only nodes send the request (export): the KV
// service refuses it from clients.
func (c *Command) Internal() bool { return c.internal }

// Span is the key span r touches: what it latches, what must lie inside
// the range it is sent to, what the router splits it by.
func (c *Command) Span(r *rspb.RequestUnion) Span { return c.span(r) }

// Payload returns the keys and values r carries, which Limits bound.
func (c *Command) Payload(r *rspb.RequestUnion) (keys, values [][]byte) { return c.payload(r) }

// Check validates a client request against l (keys as the client wrote
// them) and returns its key+value bytes. Violations are INVALID_ARGUMENT
// errors naming the request type, the field and the limit.
func (c *Command) Check(r *rspb.RequestUnion, l Limits) (int, error) {
	if err := c.check(r, l); err != nil {
		return 0, err
	}
	ks, vs := c.payload(r)
	n := 0
	for _, k := range ks {
		n += len(k)
	}
	for _, v := range vs {
		n += len(v)
	}
	return n, nil
}

// AsOf is the timestamp a read request asked to read at (nil: the batch's
// timestamp; always nil for writes).
func (c *Command) AsOf(r *rspb.RequestUnion) *rspb.Timestamp {
	if c.asOf == nil {
		return nil
	}
	return c.asOf(r)
}

// Since is the oldest timestamp whose versions a read needs besides those
// visible at its read timestamp (an incremental export's start_ts; nil for
// every other request): a replica whose GC threshold is above it refuses
// the read.
func (c *Command) Since(r *rspb.RequestUnion) *rspb.Timestamp {
	if c.since == nil {
		return nil
	}
	return c.since(r)
}

// MinWriteTimestamp is the lowest timestamp a write request's command may
// be proposed at (nil for most): a resolution writes committed versions at
// its transaction's commit timestamp, and the range's max write timestamp,
// which later non-transactional writes go above, must cover them.
func (c *Command) MinWriteTimestamp(r *rspb.RequestUnion) *rspb.Timestamp {
	if c.minTS == nil {
		return nil
	}
	return c.minTS(r)
}

// ToInternal returns a copy of a client request with its keys mapped into
// the user span (clients cannot address the system span).
func (c *Command) ToInternal(r *rspb.RequestUnion) *rspb.RequestUnion { return c.toInternal(r) }

// Clip returns r restricted to [start, end), for a span request that
// crosses range boundaries; point requests are returned as they are.
func (c *Command) Clip(r *rspb.RequestUnion, start, end []byte) *rspb.RequestUnion {
	if c.clip == nil {
		return r
	}
	return c.clip(r, start, end)
}

// Merge folds the responses of the per-range parts of r (ordered by the
// start key of the range that answered) into r's response. A point
// request has one part, which is its response.
func (c *Command) Merge(r *rspb.RequestUnion, parts []*rspb.ResponseUnion) *rspb.ResponseUnion {
	if c.merge == nil {
		if len(parts) == 0 {
			return nil
		}
		return parts[0]
	}
	return c.merge(r, parts)
}

// Eval evaluates r against a.
func (c *Command) Eval(a *Args, r *rspb.RequestUnion) (*rspb.ResponseUnion, error) {
	return c.eval(a, r)
}

var (
	requestOneof  = (&rspb.RequestUnion{}).ProtoReflect().Descriptor().Oneofs().ByName("value")
	responseOneof = (&rspb.ResponseUnion{}).ProtoReflect().Descriptor().Oneofs().ByName("value")

	// registry maps a RequestUnion case (its Go wrapper type, e.g.
	// *rspb.RequestUnion_Get) to its command; byResponse maps a
	// ResponseUnion case to the same command.
	registry   = map[reflect.Type]*Command{}
	byResponse = map[reflect.Type]*Command{}
)

// Lookup returns the command of r's request type. An unset request or a
// type that no cmd_*.go file registered is an INVALID_ARGUMENT error.
func Lookup(r *rspb.RequestUnion) (*Command, error) {
	if r == nil || r.Value == nil {
		return nil, Errorf(rspb.RangeError_INVALID_ARGUMENT, "empty request in batch")
	}
	c := registry[reflect.TypeOf(r.Value)]
	if c == nil {
		return nil, Errorf(rspb.RangeError_INVALID_ARGUMENT, "unknown request type %T", r.Value)
	}
	return c, nil
}

// ToClient maps the keys of a response back to client keys (stripping the
// user prefix), in place: the inverse of ToInternal.
func ToClient(p *rspb.ResponseUnion) {
	if p == nil || p.Value == nil {
		return
	}
	if c := byResponse[reflect.TypeOf(p.Value)]; c != nil && c.toClient != nil {
		c.toClient(p)
	}
}

// spec is the declaration in one cmd_*.go file, typed by the request (Q)
// and response (P) messages; register turns it into a Command. The
// RequestUnion and ResponseUnion cases are found by name.
type spec[Q, P proto.Message] struct {
	name     string // field name in RequestUnion and ResponseUnion
	readOnly bool
	internal bool // only nodes send it (the KV service refuses it)

	span    func(q Q) Span                    // keys touched (latches, span checks, routing)
	payload func(q Q) (keys, values [][]byte) // what Limits bound
	check   func(q Q, l Limits) error         // a client request's validation
	asOf    func(q Q) *rspb.Timestamp         // optional: reads
	since   func(q Q) *rspb.Timestamp         // optional: reads of history (export)
	minTS   func(q Q) *rspb.Timestamp         // optional: writes of versions at a given timestamp (resolution)
	toIn    func(q Q) Q                       // client → internal keys
	toCli   func(p P)                         // optional: internal → client keys in the response
	clip    func(q Q, start, end []byte) Q    // optional: span requests
	merge   func(q Q, parts []P) P            // optional: span requests
	eval    func(a *Args, q Q) (P, error)     // evaluation
}

// register adds s to the registry. It panics (at init) if s names no case
// of both unions, its message types differ from those cases, the case is
// registered twice, or a required declaration is missing.
func register[Q, P proto.Message](s spec[Q, P]) {
	var q0 Q
	var p0 P
	reqFD := requestOneof.Fields().ByName(protoreflect.Name(s.name))
	respFD := responseOneof.Fields().ByName(protoreflect.Name(s.name))
	if reqFD == nil || respFD == nil {
		panic(fmt.Sprintf("batcheval: %q is not a case of both RequestUnion and ResponseUnion", s.name))
	}
	reqType, respType := caseType(&rspb.RequestUnion{}, reqFD), caseType(&rspb.ResponseUnion{}, respFD)
	switch {
	case reqFD.Message().FullName() != q0.ProtoReflect().Descriptor().FullName():
		panic(fmt.Sprintf("batcheval: RequestUnion.%s holds %s, not %T", s.name, reqFD.Message().FullName(), q0))
	case respFD.Message().FullName() != p0.ProtoReflect().Descriptor().FullName():
		panic(fmt.Sprintf("batcheval: ResponseUnion.%s holds %s, not %T", s.name, respFD.Message().FullName(), p0))
	case registry[reqType] != nil:
		panic(fmt.Sprintf("batcheval: %q registered twice", s.name))
	case s.span == nil || s.payload == nil || s.check == nil || s.toIn == nil || s.eval == nil:
		panic(fmt.Sprintf("batcheval: %q lacks span, payload, check, toIn or eval", s.name))
	case reqType.Elem().NumField() != 1 || respType.Elem().NumField() != 1:
		panic(fmt.Sprintf("batcheval: %q: a oneof case's wrapper has more than its message", s.name))
	case (s.clip == nil) != (s.merge == nil):
		panic(fmt.Sprintf("batcheval: %q: a span request declares both clip and merge, a point request neither", s.name))
	}
	// The case's wrapper struct (e.g. RequestUnion_Get) has one field, the
	// message. A response of another case (from a faulty peer) reads as
	// nil, which the declarations' nil-safe getters treat as empty.
	get := func(r *rspb.RequestUnion) Q { return reflect.ValueOf(r.Value).Elem().Field(0).Interface().(Q) }
	getResp := func(r *rspb.ResponseUnion) P {
		var p P
		if r != nil && reflect.TypeOf(r.Value) == respType {
			p = reflect.ValueOf(r.Value).Elem().Field(0).Interface().(P)
		}
		return p
	}
	wrap := func(q Q) *rspb.RequestUnion {
		u := &rspb.RequestUnion{}
		u.ProtoReflect().Set(reqFD, protoreflect.ValueOfMessage(q.ProtoReflect()))
		return u
	}
	wrapResp := func(p P) *rspb.ResponseUnion {
		u := &rspb.ResponseUnion{}
		u.ProtoReflect().Set(respFD, protoreflect.ValueOfMessage(p.ProtoReflect()))
		return u
	}
	c := &Command{
		name: s.name, readOnly: s.readOnly, internal: s.internal,
		span:       func(r *rspb.RequestUnion) Span { return s.span(get(r)) },
		payload:    func(r *rspb.RequestUnion) ([][]byte, [][]byte) { return s.payload(get(r)) },
		check:      func(r *rspb.RequestUnion, l Limits) error { return s.check(get(r), l) },
		toInternal: func(r *rspb.RequestUnion) *rspb.RequestUnion { return wrap(s.toIn(get(r))) },
		eval: func(a *Args, r *rspb.RequestUnion) (*rspb.ResponseUnion, error) {
			p, err := s.eval(a, get(r))
			if err != nil {
				return nil, err
			}
			return wrapResp(p), nil
		},
	}
	if s.asOf != nil {
		c.asOf = func(r *rspb.RequestUnion) *rspb.Timestamp { return s.asOf(get(r)) }
	}
	if s.since != nil {
		c.since = func(r *rspb.RequestUnion) *rspb.Timestamp { return s.since(get(r)) }
	}
	if s.minTS != nil {
		c.minTS = func(r *rspb.RequestUnion) *rspb.Timestamp { return s.minTS(get(r)) }
	}
	if s.toCli != nil {
		c.toClient = func(p *rspb.ResponseUnion) {
			if m := getResp(p); m.ProtoReflect().IsValid() {
				s.toCli(m)
			}
		}
	}
	if s.clip != nil {
		c.clip = func(r *rspb.RequestUnion, start, end []byte) *rspb.RequestUnion {
			return wrap(s.clip(get(r), start, end))
		}
		c.merge = func(r *rspb.RequestUnion, parts []*rspb.ResponseUnion) *rspb.ResponseUnion {
			ps := make([]P, len(parts))
			for i, p := range parts {
				ps[i] = getResp(p)
			}
			return wrapResp(s.merge(get(r), ps))
		}
	}
	registry[reqType] = c
	byResponse[respType] = c
}

// caseType returns the Go wrapper type of a union's case fd (e.g.
// *rspb.RequestUnion_Get), which Lookup keys its map by.
func caseType(union proto.Message, fd protoreflect.FieldDescriptor) reflect.Type {
	m := union.ProtoReflect()
	m.Set(fd, m.NewField(fd))
	return reflect.ValueOf(union).Elem().FieldByName("Value").Elem().Type()
}
