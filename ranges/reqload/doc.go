// Package reqload keeps where a range's requests come from: per gateway
// node (the node whose router sent the batch, RangeRequest.gateway_node_id;
// 0 for a sender that does not say), an exponentially weighted moving
// average of requests per second. The leaseholder records every batch it
// serves; the replicate queue turns the figures into request localities
// for follow-the-workload (allocator.ScoreInput.Requests) and the range's
// QPS for load balancing.
//
// Pure: no clock and no goroutine (every call takes the time from the
// caller). Each gateway keeps a decayed count c, which a request raises by
// one and which decays by exp(-dt/Tau) over dt; its rate is c/Tau, which
// converges to the request rate within a few Tau of a steady load and
// halves every Tau·ln 2 once the load stops. Memory is bounded: a gateway
// whose rate decayed below DropBelow is forgotten, and at most MaxGateways
// are kept (a new one replaces the slowest). Record costs a map lookup and
// one exp under a mutex.
package reqload
