package txnwait

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rangestore/rangestore/internal/golden"
)

// jts is a timestamp in the JSON cases: seconds of wall time, optionally
// ",logical" ("10", "10.5", "10,1").
type jts Timestamp

func (t *jts) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	wall, logical, _ := strings.Cut(s, ",")
	sec, err := strconv.ParseFloat(wall, 64)
	if err != nil {
		return fmt.Errorf("timestamp %s: %w", b, err)
	}
	t.WallTime = int64(math.Round(sec * 1e9))
	if logical != "" {
		l, err := strconv.ParseInt(logical, 10, 32)
		if err != nil {
			return fmt.Errorf("timestamp %s: %w", b, err)
		}
		t.Logical = int32(l)
	}
	return nil
}

// jpri is a priority: "min", "max", "normal" (1000) or a number.
type jpri int32

func (p *jpri) UnmarshalJSON(b []byte) error {
	switch s := strings.Trim(string(b), `"`); s {
	case "min":
		*p = jpri(MinPriority)
	case "max":
		*p = jpri(MaxPriority)
	case "normal":
		*p = 1000
	default:
		n, err := strconv.ParseInt(s, 10, 32)
		if err != nil {
			return fmt.Errorf("priority %s: %w", b, err)
		}
		*p = jpri(n)
	}
	return nil
}

// jid is a txn ID given as the hex of its first bytes ("a1").
type jid TxnID

func (id *jid) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	raw, err := hex.DecodeString(s)
	if err != nil || len(raw) > len(id) {
		return fmt.Errorf("txn id %q: want up to 16 bytes of hex", s)
	}
	copy(id[:], raw)
	return nil
}

// jtxn is a TxnState in the JSON cases.
type jtxn struct {
	ID       jid
	Epoch    int32
	Pri      jpri
	Status   string
	TS       jts
	Start    jts
	HB       jts
	InFlight int
}

func parseEnum(t *testing.T, what, s string, names ...string) int {
	t.Helper()
	for i, n := range names {
		if n == s {
			return i
		}
	}
	t.Fatalf("unknown %s %q", what, s)
	return 0
}

func (j *jtxn) state(t *testing.T) *TxnState {
	if j == nil {
		return nil
	}
	status := Pending
	if j.Status != "" {
		status = TxnStatus(parseEnum(t, "status", j.Status, "PENDING", "STAGING", "COMMITTED", "ABORTED"))
	}
	return &TxnState{ID: TxnID(j.ID), Epoch: j.Epoch, Priority: int32(j.Pri), Status: status, WriteTS: Timestamp(j.TS),
		StartTS: Timestamp(j.Start), LastHeartbeat: Timestamp(j.HB), InFlightWrites: j.InFlight}
}

func parseCheck(t *testing.T, s string) RecordCheck {
	if s == "" {
		return RecordCreatable
	}
	return RecordCheck(parseEnum(t, "record check", s, "creatable", "tombstone", "below-low-water"))
}

// describe is a record as the golden files print it ("none" for nil).
func describe(r *TxnState) string {
	if r == nil {
		return "none"
	}
	return fmt.Sprintf("{%s last-active=%s}", r, r.LastActive())
}

type pushCase struct {
	Name      string
	Pusher    *jtxn
	Pushee    jtxn
	Record    *jtxn
	Check     string
	Type      string
	PushTo    jts `json:"push_to"`
	Now       jts
	Threshold float64 // seconds; 0: default
	Force     bool
}

// TestDecidePush runs testdata/push.json through DecidePush and compares
// input → action: reason with testdata/push.golden. Regenerate with -rewrite.
func TestDecidePush(t *testing.T) {
	var cases []pushCase
	golden.LoadJSON(t, "push.json", &cases)
	var out strings.Builder
	for _, c := range cases {
		req := PushRequest{Pusher: c.Pusher.state(t), Pushee: *c.Pushee.state(t), Record: c.Record.state(t),
			RecordCheck: parseCheck(t, c.Check), Type: PushType(parseEnum(t, "push type", c.Type, "PUSH_TIMESTAMP", "PUSH_ABORT", "PUSH_TOUCH")),
			PushTo: Timestamp(c.PushTo), Now: Timestamp(c.Now), Threshold: time.Duration(c.Threshold * float64(time.Second)), Force: c.Force}
		var in strings.Builder
		if req.Pusher == nil {
			in.WriteString("non-txn")
		} else {
			fmt.Fprintf(&in, "%s(pri=%s)", req.Pusher.ID, priorityLabel(req.Pusher.Priority))
		}
		fmt.Fprintf(&in, " %s", req.Type)
		if req.Type == PushTimestamp {
			fmt.Fprintf(&in, " to %s", req.PushTo)
		}
		if req.Force {
			in.WriteString(" forced")
		}
		ip := req.Pushee
		fmt.Fprintf(&in, "; intent %s epoch=%d ts=%s start=%s pri=%s; record=%s", ip.ID, ip.Epoch, ip.WriteTS, ip.StartTS, priorityLabel(ip.Priority), describe(req.Record))
		if req.Record == nil {
			fmt.Fprintf(&in, " (%s)", req.RecordCheck)
		}
		if req.Threshold != 0 {
			fmt.Fprintf(&in, " threshold=%v", req.Threshold)
		}
		fmt.Fprintf(&out, "== %s\n%s now=%s\n", c.Name, in.String(), req.Now)
		d, err := DecidePush(req)
		if err != nil {
			fmt.Fprintf(&out, "→ error: %v\n\n", err)
			continue
		}
		fmt.Fprintf(&out, "→ %s: %s\n  pushee after: %s write-record=%t marker=%s\n\n", d.Action, d.Reason, d.Pushee, d.WriteRecord, d.Marker)
	}
	golden.Check(t, "push.golden", []byte(out.String()))
}

type endTxnCase struct {
	Name     string
	Txn      jtxn
	Kind     string
	CommitTS jts `json:"commit_ts"`
	InFlight int
	Deadline jts
	Record   *jtxn
	Check    string
	PushedTo jts `json:"pushed_to"`
	Now      jts
}

// TestDecideEndTxn runs testdata/end_txn.json through DecideEndTxn and
// compares input → action: reason with testdata/end_txn.golden.
func TestDecideEndTxn(t *testing.T) {
	var cases []endTxnCase
	golden.LoadJSON(t, "end_txn.json", &cases)
	var out strings.Builder
	for _, c := range cases {
		in := EndTxnInput{Req: EndTxnRequest{Txn: *c.Txn.state(t), Kind: EndKind(parseEnum(t, "end kind", c.Kind, "commit", "stage", "abort")),
			CommitTS: Timestamp(c.CommitTS), InFlightWrites: c.InFlight, Deadline: Timestamp(c.Deadline)},
			Record: c.Record.state(t), RecordCheck: parseCheck(t, c.Check), PushedTo: Timestamp(c.PushedTo), Now: Timestamp(c.Now)}
		fmt.Fprintf(&out, "== %s\n%s epoch=%d at %s", c.Name, in.Req.Kind, in.Req.Txn.Epoch, in.Req.CommitTS)
		if in.Req.Kind == EndStage {
			fmt.Fprintf(&out, " inflight=%d", in.Req.InFlightWrites)
		}
		if !in.Req.Deadline.IsEmpty() {
			fmt.Fprintf(&out, " deadline=%s", in.Req.Deadline)
		}
		fmt.Fprintf(&out, "; record=%s", describe(in.Record))
		if in.Record == nil {
			fmt.Fprintf(&out, " (%s)", in.RecordCheck)
		}
		fmt.Fprintf(&out, " push-marker=%s now=%s\n", orNone(in.PushedTo), in.Now)
		d, err := DecideEndTxn(in)
		if err != nil {
			fmt.Fprintf(&out, "→ error: %v\n\n", err)
			continue
		}
		fmt.Fprintf(&out, "→ %s: %s\n  txn: %s\n\n", d.Action, d.Reason, d.Txn)
	}
	golden.Check(t, "end_txn.golden", []byte(out.String()))
}

type heartbeatCase struct {
	Name   string
	Txn    jtxn
	Record *jtxn
	Check  string
	Now    jts
}

// TestDecideHeartbeat runs testdata/heartbeat.json through DecideHeartbeat
// and compares with testdata/heartbeat.golden.
func TestDecideHeartbeat(t *testing.T) {
	var cases []heartbeatCase
	golden.LoadJSON(t, "heartbeat.json", &cases)
	var out strings.Builder
	for _, c := range cases {
		txn, rec, check := *c.Txn.state(t), c.Record.state(t), parseCheck(t, c.Check)
		a, after, reason := DecideHeartbeat(txn, rec, check, Timestamp(c.Now))
		fmt.Fprintf(&out, "== %s\nheartbeat %s record=%s check=%s now=%s\n→ %s: %s\n  txn: %s last-heartbeat=%s\n\n", c.Name, txn.ID,
			describe(rec), check, Timestamp(c.Now), a, reason, after, after.LastHeartbeat)
	}
	golden.Check(t, "heartbeat.golden", []byte(out.String()))
}

type recoveryCase struct {
	Name    string
	Staging jtxn
	Current *jtxn
	Writes  []string
}

// TestDecideRecovery runs testdata/recovery.json through DecideRecovery and
// compares with testdata/recovery.golden.
func TestDecideRecovery(t *testing.T) {
	var cases []recoveryCase
	golden.LoadJSON(t, "recovery.json", &cases)
	var out strings.Builder
	for _, c := range cases {
		staging, cur := *c.Staging.state(t), c.Current.state(t)
		writes := make([]WriteResult, len(c.Writes))
		for i, w := range c.Writes {
			writes[i] = WriteResult(parseEnum(t, "write result", w, "found", "prevented", "found-above"))
		}
		fmt.Fprintf(&out, "== %s\nrecover staging=%s current=%s writes=%v\n", c.Name, describe(&staging), describe(cur), writes)
		a, after, reason, err := DecideRecovery(staging, cur, writes)
		if err != nil {
			fmt.Fprintf(&out, "→ error: %v\n\n", err)
			continue
		}
		fmt.Fprintf(&out, "→ %s: %s\n  record: %s\n\n", a, reason, after)
	}
	golden.Check(t, "recovery.golden", []byte(out.String()))
}

// TestDecideErrors: inputs that no caller may send are refused with an
// error naming the field, not decided.
func TestDecideErrors(t *testing.T) {
	a, b := TxnState{ID: TxnID{0xa}, Priority: 5}, TxnState{ID: TxnID{0xb}, Priority: 5}
	for _, tc := range []struct {
		name, want string
		err        error
	}{
		{"self push", "same transaction", func() error { _, err := DecidePush(PushRequest{Pusher: &a, Pushee: a}); return err }()},
		{"record of another txn", "Record is of txn", func() error { _, err := DecidePush(PushRequest{Pushee: a, Record: &b}); return err }()},
		{"bad push type", "Type 7", func() error { _, err := DecidePush(PushRequest{Pushee: a, Type: 7}); return err }()},
		{"negative priority", "Pusher.Priority -1", func() error {
			p := b
			p.Priority = -1
			_, err := DecidePush(PushRequest{Pusher: &p, Pushee: a})
			return err
		}()},
		{"negative threshold", "Threshold -1s", func() error { _, err := DecidePush(PushRequest{Pushee: a, Threshold: -time.Second}); return err }()},
		{"stage without writes", "Req.InFlightWrites is 0", func() error {
			_, err := DecideEndTxn(EndTxnInput{Req: EndTxnRequest{Txn: a, Kind: EndStage}})
			return err
		}()},
		{"bad end kind", "Req.Kind 9", func() error { _, err := DecideEndTxn(EndTxnInput{Req: EndTxnRequest{Txn: a, Kind: 9}}); return err }()},
		{"results miscounted", "1 write results for 2", func() error {
			s := a
			s.Status, s.InFlightWrites = Staging, 2
			_, _, _, err := DecideRecovery(s, &s, []WriteResult{WriteFound})
			return err
		}()},
		{"self wait", "cannot wait for itself", NewGraph().AddWait(a, a)},
	} {
		if tc.err == nil || !strings.Contains(tc.err.Error(), tc.want) {
			t.Errorf("%s: got error %v, want one containing %q", tc.name, tc.err, tc.want)
		}
	}
}
