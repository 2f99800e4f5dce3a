package chaos

import (
	"testing"

	"github.com/anishathalye/porcupine"
)

// TestModel checks the model itself on small hand-made histories: a checker
// that accepts everything would make the chaos runs meaningless.
func TestModel(t *testing.T) {
	op := func(c int, in Input, out Output, call, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: c, Input: in, Output: out, Call: call, Return: ret}
	}
	cases := []struct {
		name string
		ops  []porcupine.Operation
		want bool
	}{
		{"read own write", []porcupine.Operation{
			op(0, Input{Op: "put", Key: "k", Value: "a"}, Output{}, 0, 10),
			op(1, Input{Op: "get", Key: "k"}, Output{Found: true, Value: "a"}, 20, 30),
		}, true},
		{"stale read after acknowledged write", []porcupine.Operation{
			op(0, Input{Op: "put", Key: "k", Value: "a"}, Output{}, 0, 10),
			op(0, Input{Op: "put", Key: "k", Value: "b"}, Output{}, 11, 20),
			op(1, Input{Op: "get", Key: "k"}, Output{Found: true, Value: "a"}, 30, 40),
		}, false},
		{"read absent after write", []porcupine.Operation{
			op(0, Input{Op: "put", Key: "k", Value: "a"}, Output{}, 0, 10),
			op(1, Input{Op: "get", Key: "k"}, Output{}, 20, 30),
		}, false},
		{"ambiguous write may apply later", []porcupine.Operation{
			op(0, Input{Op: "put", Key: "k", Value: "a"}, Output{Unknown: true}, 0, 100),
			op(1, Input{Op: "get", Key: "k"}, Output{}, 20, 30),
			op(1, Input{Op: "get", Key: "k"}, Output{Found: true, Value: "a"}, 40, 50),
		}, true},
		{"ambiguous write may never apply", []porcupine.Operation{
			op(0, Input{Op: "put", Key: "k", Value: "a"}, Output{Unknown: true}, 0, 100),
			op(1, Input{Op: "get", Key: "k"}, Output{}, 40, 50),
		}, true},
		{"cas on absent", []porcupine.Operation{
			op(0, Input{Op: "cas", Key: "k", Value: "a", Absent: true}, Output{OK: true}, 0, 10),
			op(1, Input{Op: "cas", Key: "k", Value: "b", Absent: true}, Output{OK: true}, 20, 30),
		}, false},
		{"cas chain", []porcupine.Operation{
			op(0, Input{Op: "cas", Key: "k", Value: "a", Absent: true}, Output{OK: true}, 0, 10),
			op(1, Input{Op: "cas", Key: "k", Value: "b", Expected: "a"}, Output{OK: true}, 20, 30),
			op(2, Input{Op: "cas", Key: "k", Value: "c", Expected: "a"}, Output{OK: false}, 40, 50),
			op(2, Input{Op: "get", Key: "k"}, Output{Found: true, Value: "b"}, 60, 70),
		}, true},
		// Conditional deletes (ConditionalPut with delete).
		{"conditional delete deletes", []porcupine.Operation{
			op(0, Input{Op: "put", Key: "k", Value: "a"}, Output{}, 0, 10),
			op(1, Input{Op: "cdel", Key: "k", Expected: "a"}, Output{OK: true}, 20, 30),
			op(2, Input{Op: "get", Key: "k"}, Output{}, 40, 50),
			op(0, Input{Op: "cas", Key: "k", Value: "b", Absent: true}, Output{OK: true}, 60, 70),
			op(1, Input{Op: "get", Key: "k"}, Output{Found: true, Value: "b"}, 80, 90),
		}, true},
		{"conditional delete that kept the key", []porcupine.Operation{
			// The bug of issue 9: succeeded, but the key stayed.
			op(0, Input{Op: "put", Key: "k", Value: "a"}, Output{}, 0, 10),
			op(1, Input{Op: "cdel", Key: "k", Expected: "a"}, Output{OK: true}, 20, 30),
			op(2, Input{Op: "get", Key: "k"}, Output{Found: true, Value: "a"}, 40, 50),
		}, false},
		{"conditional delete that left an empty value", []porcupine.Operation{
			op(0, Input{Op: "put", Key: "k", Value: "a"}, Output{}, 0, 10),
			op(1, Input{Op: "cdel", Key: "k", Expected: "a"}, Output{OK: true}, 20, 30),
			op(2, Input{Op: "get", Key: "k"}, Output{Found: true, Value: ""}, 40, 50),
		}, false},
		{"conditional delete then expect-absent cas must succeed", []porcupine.Operation{
			op(0, Input{Op: "put", Key: "k", Value: "a"}, Output{}, 0, 10),
			op(1, Input{Op: "cdel", Key: "k", Expected: "a"}, Output{OK: true}, 20, 30),
			op(2, Input{Op: "cas", Key: "k", Value: "b", Absent: true}, Output{OK: false}, 40, 50),
		}, false},
		{"conditional delete on a mismatch must fail", []porcupine.Operation{
			op(0, Input{Op: "put", Key: "k", Value: "a"}, Output{}, 0, 10),
			op(1, Input{Op: "cdel", Key: "k", Expected: "b"}, Output{OK: true}, 20, 30),
		}, false},
		{"failed conditional delete keeps the key", []porcupine.Operation{
			op(0, Input{Op: "put", Key: "k", Value: "a"}, Output{}, 0, 10),
			op(1, Input{Op: "cdel", Key: "k", Expected: "b"}, Output{OK: false}, 20, 30),
			op(2, Input{Op: "get", Key: "k"}, Output{Found: true, Value: "a"}, 40, 50),
		}, true},
		{"failed conditional delete that deleted", []porcupine.Operation{
			op(0, Input{Op: "put", Key: "k", Value: "a"}, Output{}, 0, 10),
			op(1, Input{Op: "cdel", Key: "k", Expected: "b"}, Output{OK: false}, 20, 30),
			op(2, Input{Op: "get", Key: "k"}, Output{}, 40, 50),
		}, false},
		{"concurrent conditional deletes: only one succeeds", []porcupine.Operation{
			op(0, Input{Op: "put", Key: "k", Value: "a"}, Output{}, 0, 10),
			op(1, Input{Op: "cdel", Key: "k", Expected: "a"}, Output{OK: true}, 20, 40),
			op(2, Input{Op: "cdel", Key: "k", Expected: "a"}, Output{OK: true}, 25, 45),
		}, false},
		{"conditional delete expecting absence", []porcupine.Operation{
			op(0, Input{Op: "cdel", Key: "k", Absent: true}, Output{OK: true}, 0, 10),
			op(1, Input{Op: "put", Key: "k", Value: "a"}, Output{}, 20, 30),
			op(0, Input{Op: "cdel", Key: "k", Absent: true}, Output{OK: true}, 40, 50),
		}, false},
		{"ambiguous conditional delete may apply later", []porcupine.Operation{
			op(0, Input{Op: "put", Key: "k", Value: "a"}, Output{}, 0, 10),
			op(1, Input{Op: "cdel", Key: "k", Expected: "a"}, Output{Unknown: true}, 20, 200),
			op(2, Input{Op: "get", Key: "k"}, Output{Found: true, Value: "a"}, 40, 50),
			op(2, Input{Op: "get", Key: "k"}, Output{}, 60, 70),
		}, true},
		{"ambiguous conditional delete may apply before a later write", []porcupine.Operation{
			op(0, Input{Op: "put", Key: "k", Value: "a"}, Output{}, 0, 10),
			op(1, Input{Op: "cdel", Key: "k", Expected: "a"}, Output{Unknown: true}, 20, 200),
			op(2, Input{Op: "get", Key: "k"}, Output{}, 40, 50),
			op(0, Input{Op: "put", Key: "k", Value: "a"}, Output{}, 60, 70),
			op(2, Input{Op: "get", Key: "k"}, Output{Found: true, Value: "a"}, 80, 90),
		}, true},
		{"keys are independent", []porcupine.Operation{
			op(0, Input{Op: "put", Key: "k", Value: "a"}, Output{}, 0, 10),
			op(1, Input{Op: "get", Key: "j"}, Output{}, 20, 30),
		}, true},
	}
	for _, c := range cases {
		got := porcupine.CheckOperations(KVModel.ToModel(), c.ops)
		if got != c.want {
			t.Errorf("%s: linearizable=%v, want %v", c.name, got, c.want)
		}
	}
}
