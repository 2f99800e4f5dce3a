package chaos

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/rangestore/rangestore/client"
	"github.com/rangestore/rangestore/node"
	"github.com/rangestore/rangestore/proto/rspb"
)

// TestNeverSent: only the client's own failure to reach the node it chose
// leaves a write out of the history; a node's answer that quotes a dial
// error of its own (the leaseholder it had sent an attempt to died) keeps
// the write as ambiguous.
func TestNeverSent(t *testing.T) {
	addr, err := node.FreeAddr() // nothing listens there
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, dialErr := rspb.NewKVClient(conn).Put(ctx, &rspb.PutRequest{Key: []byte("k"), Value: []byte("v")})
	if !neverSent(dialErr) {
		t.Fatalf("the client's own dial failure %v: not taken as never sent", dialErr)
	}
	quoted := "range r5 unavailable: context deadline exceeded (last error: n3: " + status.Convert(dialErr).Message() + ")"
	for _, err := range []error{
		nil,
		status.Error(codes.Unavailable, quoted),
		status.Error(codes.Unknown, "the write to range r5 may or may not have applied: context deadline exceeded (last error: n3: "+dialErr.Error()+")"),
		status.Error(codes.DeadlineExceeded, "context deadline exceeded"),
		status.Error(codes.Unavailable, "error reading from server: EOF"),
	} {
		if neverSent(err) {
			t.Errorf("%v: taken as never sent, but the write may have applied", err)
		}
	}
}

// TestDBWriteNotApplied: of a client.DB's write errors, only those the
// client documents as "did not apply" (Unavailable, InvalidArgument)
// leave a write out of the history; every other error, an ended context
// included, makes it maybe-applied. A failed condition is an answer, not
// an error (dbDoer.cput).
func TestDBWriteNotApplied(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&client.Error{Code: client.Unavailable, Op: "put", Message: "range r5 unavailable: the retry budget of 100 attempts ran out"}, true},
		{&client.Error{Code: client.InvalidArgument, Op: "put", Message: "key: empty key is not allowed"}, true},
		{fmt.Errorf("wrapped: %w", &client.Error{Code: client.Unavailable}), true},
		{&client.Error{Code: client.Ambiguous, Op: "put"}, false},
		{&client.Error{Code: client.DeadlineExceeded, Op: "put", Err: context.DeadlineExceeded}, false},
		{&client.Error{Code: client.Canceled, Op: "put", Err: context.Canceled}, false},
		{&client.Error{Code: client.Closed, Op: "put"}, false},
		{&client.Error{Code: client.Unknown, Op: "put"}, false},
		{&client.Error{Code: client.Internal, Op: "put"}, false},
		{&client.Error{Code: client.FailedPrecondition, Op: "put"}, false},
		{&client.ConditionFailedError{Key: []byte("k")}, false},
		{status.Error(codes.Unavailable, "connection error"), false}, // not a client error
		{context.DeadlineExceeded, false},
	} {
		if got := dbWriteNotApplied(c.err); got != c.want {
			t.Errorf("%v: not applied = %v, want %v", c.err, got, c.want)
		}
	}
}
