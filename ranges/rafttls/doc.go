// Package rafttls is the Raft transport of a secure node (issue 15): a
// Dragonboat raftio.ITransport over mutual TLS 1.3, made by a Factory
// (New) set as NodeHostConfig.Expert.TransportFactory.
//
// Why not Dragonboat's own MutualTLS: it reads the server certificate
// once at start (no rotation without a restart), accepts TLS 1.2, and
// accepts any certificate of the CA, a client's included. Here the server
// configuration is built once but decides per handshake
// (security.Manager.ServerTLS, through GetConfigForClient), the client
// configuration is asked for at every dial (Config.ClientTLS), so a
// certificate reload (SIGHUP) applies to new connections while
// established ones keep theirs; TLS 1.3 is required on both sides (in
// the configurations themselves, the server's per-handshake one
// included, and checked again after each handshake); and
// Config.VerifyPeer, given the verified connection state on both sides,
// refuses a peer whose certificate is not a node's.
//
// Connections. One TCP listener on the NodeHost's listen address
// (ListenAddress, else RaftAddress). A dial (GetConnection for message
// batches, GetSnapshotConnection for snapshot chunks) connects, does the
// TLS handshake with ServerName the target's host, checks the server
// (TLS 1.3, VerifyPeer), writes a 6-byte preamble — magic "RSRT", the
// protocol Version, the kind ('m' messages, 'c' chunks) — and waits for
// the server's acceptance byte (0x06), all within 5 s. Under TLS 1.3 the
// server judges the client's certificate after the client finished its
// side of the handshake; the acceptance byte turns that verdict into an
// error of the dial, not of a later send. The server, per accepted
// connection: handshake and preamble within 5 s, TLS 1.3, VerifyPeer, a
// known magic, version and kind; anything else closes the connection and
// logs the peer address and the reason (at most one line per 10 s, with
// the count of lines held back: a peer retrying with a bad certificate
// does not flood the log). A dial refused after its TCP connect is
// logged the same way on the dialling side; a failed TCP connect (a peer
// down) is only returned, for Dragonboat to retry.
//
// Frames. After the acceptance, a connection carries frames one way: a
// 4-byte big-endian length, then a marshaled pb.MessageBatch or pb.Chunk
// per the connection's kind. No checksum: TLS authenticates every
// record. A frame is at most MaxFrameSize (96 MiB; see there); the
// sender refuses a bigger one with a *FrameTooLargeError before writing
// anything (the connection stays usable), the receiver refuses a header
// announcing one (and an empty frame) without reading or allocating it,
// and closes the connection. A sender marshals each batch into a buffer
// it reuses (kept up to 4 MiB) and writes it in one write; a frame over
// 4 MiB goes in 4 MiB writes. Dialled connections use full-size TLS
// records from the start (DynamicRecordSizingDisabled). The receiver reuses its read buffer the
// same way (the decoders copy what they keep). No goroutine per batch or
// per message: sends run on the caller's goroutine (Dragonboat's one
// sender per target).
//
// A peer that went away. A dialled message connection has one goroutine,
// blocked reading it: the receiver sends nothing after the acceptance
// byte, so the read returns only when the receiver closed the connection
// or its process died (its kernel answers FIN or RST). The next send then
// dials again once and goes on the new connection; only if that dial
// fails does the send fail. Written into the dead connection instead, the
// first batch after the peer's death was lost without an error, the next
// failed, and each failure trips Dragonboat's circuit breaker for the
// peer's address, which drops every message to that peer for up to
// about 1.5 s: connections of rarely used send queues failed that way
// seconds after the peer had restarted, so elections needing its vote
// stalled (issue 14, the failover benchmark's tail).
//
// Time limits. Each write of up to 4 MiB has a 10 s deadline, so a send
// to a dead or stalled peer fails within it instead of blocking its
// sender. A receiver waits at most 2 minutes for the next frame to
// start: Dragonboat's sender closes a connection it has not used for a
// minute, so a live sender always closes first, and a connection whose
// sender vanished without closing is reaped; Raft heartbeats (every
// HeartbeatRTT) keep the connections between replicas of a shard busy
// well within that. Once a frame started, each read of up to 4 MiB has
// 10 s. TCP keepalive (after 10 s idle, every 5 s, 3 probes) notices a
// vanished peer on an idle connection in about 25 s.
//
// Snapshots. A ChunkHandler returning false closes that connection, so
// the sender's next sends fail. Closing a snapshot connection is
// graceful: the sender sends close_notify, and waits (at most 10 s) for
// the receiver, which has then read and handled every chunk, to close
// its side; closing the socket at once could lose the last chunks.
//
// Ownership. The transport owns the accept loop, one goroutine per
// accepted connection (handshake, then frames) and one per dialled
// message connection (watching for the peer's close), counted in a WaitGroup,
// and every open TCP connection, accepted or dialled, in a set. Close
// stops the listener, closes every connection (which ends blocked
// handshakes, reads and writes), and waits for the goroutines. A dial
// after Close fails; dialled connections' Close is then harmless.
//
// Invariants: nothing reaches a handler from a connection that did not
// complete a verified TLS 1.3 handshake, pass VerifyPeer and present a
// known preamble; a connection carries frames of one kind only; no frame
// over MaxFrameSize is sent or read; no send blocks longer than one dial
// (5 s, after the peer closed the connection) plus 10 s per 4 MiB; no
// batch is written to a message connection the peer is known to have
// closed; after Close returns no goroutine of the transport runs.
package rafttls
