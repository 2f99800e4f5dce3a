// Package leases holds the time and liveness machinery of rangestore.
//
// Today it provides the hybrid logical clock (HLC) used to timestamp every
// write: an injectable physical clock plus a logical counter, so timestamps
// handed out by one node are strictly increasing and exceed every timestamp
// the node has observed (Update). Node liveness, epoch and expiration leases
// build on it (DESIGN.md §5).
package leases
