package chaos

import (
	"fmt"
	"sort"

	"github.com/anishathalye/porcupine"
)

// Input is one client operation on a key.
type Input struct {
	Op       string // "get", "put", "cas", "cdel"
	Key      string
	Value    string // put/cas: new value
	Expected string // cas/cdel: expected current value
	Absent   bool   // cas/cdel: expects the key to be absent
}

// Output is what the client observed.
type Output struct {
	Found   bool   // get: key exists
	Value   string // get: value read
	OK      bool   // cas/cdel: condition held and the write applied
	Unknown bool   // put/cas/cdel: failed with an error: may or may not have applied
}

// register is the model state of one key.
type register struct {
	Found bool
	Value string
}

// KVModel is a per-key register model with get, put, compare-and-set and
// conditional delete (ConditionalPut with delete: a successful condition
// leaves the key absent).
// Writes whose outcome is unknown may or may not have taken effect (the
// model branches), at any point after their call (their return time is the
// end of the history).
var KVModel = porcupine.NondeterministicModel{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, op := range history {
			k := op.Input.(Input).Key
			byKey[k] = append(byKey[k], op)
		}
		keys := make([]string, 0, len(byKey))
		for k := range byKey {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() []interface{} { return []interface{}{register{}} },
	Step: func(state, input, output interface{}) []interface{} {
		s, in, out := state.(register), input.(Input), output.(Output)
		switch in.Op {
		case "get":
			if out.Found == s.Found && (!s.Found || out.Value == s.Value) {
				return []interface{}{s}
			}
			return nil
		case "put":
			next := register{Found: true, Value: in.Value}
			if out.Unknown {
				return []interface{}{s, next}
			}
			return []interface{}{next}
		case "cas", "cdel":
			holds := s.Found && s.Value == in.Expected
			if in.Absent {
				holds = !s.Found
			}
			next := register{Found: true, Value: in.Value}
			if in.Op == "cdel" {
				next = register{}
			}
			switch {
			case out.Unknown && holds:
				return []interface{}{s, next}
			case out.Unknown:
				return []interface{}{s}
			case out.OK && holds:
				return []interface{}{next}
			case !out.OK && !holds:
				return []interface{}{s}
			}
			return nil
		}
		return nil
	},
	Equal: func(a, b interface{}) bool { return a.(register) == b.(register) },
	DescribeOperation: func(input, output interface{}) string {
		in, out := input.(Input), output.(Output)
		switch in.Op {
		case "get":
			if !out.Found {
				return fmt.Sprintf("get(%s) -> absent", in.Key)
			}
			return fmt.Sprintf("get(%s) -> %s", in.Key, out.Value)
		case "put":
			if out.Unknown {
				return fmt.Sprintf("put(%s, %s) -> ?", in.Key, in.Value)
			}
			return fmt.Sprintf("put(%s, %s)", in.Key, in.Value)
		default:
			r := fmt.Sprint(out.OK)
			if out.Unknown {
				r = "?"
			}
			exp := in.Expected
			if in.Absent {
				exp = "absent"
			}
			if in.Op == "cdel" {
				return fmt.Sprintf("cdel(%s, if %s) -> %s", in.Key, exp, r)
			}
			return fmt.Sprintf("cas(%s, %s -> %s) -> %s", in.Key, exp, in.Value, r)
		}
	},
	DescribeState: func(state interface{}) string {
		s := state.(register)
		if !s.Found {
			return "absent"
		}
		return s.Value
	},
}
