package batcheval

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/rangestore/rangestore/proto/rspb"
)

// TestEveryRequestTypeHasACommand walks the cases of RequestUnion and
// ResponseUnion: each must have a registered command of the same name, so
// a request type added to the proto without its cmd_*.go file fails here.
func TestEveryRequestTypeHasACommand(t *testing.T) {
	reqs := requestOneof.Fields()
	if reqs.Len() == 0 {
		t.Fatal("RequestUnion.value has no cases")
	}
	for i := 0; i < reqs.Len(); i++ {
		fd := reqs.Get(i)
		u := &rspb.RequestUnion{}
		u.ProtoReflect().Set(fd, protoreflect.ValueOfMessage(u.ProtoReflect().NewField(fd).Message()))
		c, err := Lookup(u)
		if err != nil {
			t.Errorf("RequestUnion.%s (%s) has no command: add cmd_%s.go registering it (%v)", fd.Name(), fd.Message().Name(), fd.Name(), err)
			continue
		}
		if c.Name() != string(fd.Name()) {
			t.Errorf("RequestUnion.%s looks up command %q", fd.Name(), c.Name())
		}
	}
	resps := responseOneof.Fields()
	for i := 0; i < resps.Len(); i++ {
		fd := resps.Get(i)
		u := &rspb.ResponseUnion{}
		u.ProtoReflect().Set(fd, protoreflect.ValueOfMessage(u.ProtoReflect().NewField(fd).Message()))
		if c := byResponse[reflect.TypeOf(u.Value)]; c == nil || c.Name() != string(fd.Name()) {
			t.Errorf("ResponseUnion.%s (%s) has no command of that name", fd.Name(), fd.Message().Name())
		}
	}
	if len(registry) != reqs.Len() || len(byResponse) != resps.Len() {
		t.Errorf("%d commands for %d request and %d response types", len(registry), reqs.Len(), resps.Len())
	}
}

func TestLookupRefusesEmptyRequest(t *testing.T) {
	for _, r := range []*rspb.RequestUnion{nil, {}} {
		c, err := Lookup(r)
		if c != nil || err == nil || !strings.Contains(err.Error(), "empty request") {
			t.Errorf("Lookup(%v) = %v, %v; want an empty request error", r, c, err)
		}
		var re *Error
		if !errors.As(err, &re) || re.E.Code != rspb.RangeError_INVALID_ARGUMENT {
			t.Errorf("Lookup(%v): error %v is not INVALID_ARGUMENT", r, err)
		}
	}
}
