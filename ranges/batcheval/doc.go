// Package batcheval is the command registry: what each KV request type
// (a case of rspb.RequestUnion) is, declared in one file per type
// (cmd_get.go, cmd_put.go, cmd_delete.go, cmd_conditional_put.go,
// cmd_increment.go, cmd_scan.go, cmd_delete_range.go), and the internal
// ones only nodes send: export (backups), the transaction record commands
// (heartbeat_txn, end_txn, push_txn, query_txn; txn.go), resolve_intent,
// and refresh, a transaction's read that proves its earlier reads of a
// key or span still hold at its new read timestamp (no committed write
// since, no other transaction's intent at or below it; else TXN_RETRY).
//
// A file registers, at init, a spec typed by its request and response
// messages:
//   - read or write: reads are served from a snapshot by the leaseholder
//     under read latches, writes evaluated into a batch and proposed;
//   - its key span in internal keys (a point or [start, end)): what it
//     latches, what must lie inside the range it is sent to, how the
//     router splits it (clip) and folds the parts' responses (merge);
//   - its payload (the keys and values Limits bound, at the gateway and at
//     every replica) and its client validation (Check: INVALID_ARGUMENT
//     errors naming the request type, the field and the limit);
//   - its as_of (reads), and the mapping of its keys from client to
//     internal keys (ToInternal) and of its response back (ToClient);
//   - its evaluation against Args (reader, write batch, timestamp, and the
//     response-size budget shared by the batch).
//
// Lookup maps a RequestUnion to its Command (an unset request or an
// unregistered type is INVALID_ARGUMENT); gateway and ranges ask it instead
// of switching on the request type. The RequestUnion/ResponseUnion cases
// are found by the spec's name through protoreflect, in register, which is
// the one place that reads and builds the unions.
//
// Invariant: every case of RequestUnion and ResponseUnion has exactly one
// registered command of its name. Adding a request type means adding its
// cases to the proto and one cmd_*.go file here; TestEveryRequestTypeHasACommand
// fails until that file exists, and register panics at init if a spec's
// name or message types do not match the proto.
//
// The package imports neither ranges nor gateway (both import it). Error,
// the replica's verdict as a Go error, is defined here so that commands
// can return it (ranges.Error and gateway.RangeError are this type).
package batcheval
