// Package child is the child daemon: it holds a relay line to its root (or
// to each of an A/B pair, arbitrated by seq: arbiter.go), parses every item
// once into a client text frame, and fans the frames out to subscribed
// clients over gnet.
//
// Layout: this package is the relay side (relay.go, arbiter.go, clock.go)
// and the gnet glue (server.go: callbacks, the loops' batch queues). The
// parse-once state is child/frames (Core, Batch, history, images; Shared
// guards it); each event loop's clients, commands and slow-client policy
// are child/session, free of gnet and the clock. A new client command is a
// file in child/session and an entry in its command table; a new per-client
// policy is a field of session.Client checked in session.Loop's Input or
// Flush; a new control frame from the root is applied by the relay to
// frames.Core at its seq, where every loop reads it.
//
// # Data path
//
//	root --relay--> line goroutine --Core.Apply (write lock)--> *Batch
//	             (the relay frames of one read, up to frames.BatchBytes)
//	                                                   |
//	      per loop: bounded ordered queue + one coalesced EventLoop.Execute
//	                                                   v
//	    loop drain: copy batch into the loop's arena, stamp child send, hand
//	    each frame to each subscriber (a delivery: a reference into the
//	    arena, listed per client: fanout), then one Write per client per
//	    flush (every drainChunk frames at most) of its frames laid out in
//	    one shared buffer
//
// Each relay line (relay.go) is a plain net.Conn goroutine: Hello from
// LastSeq+1, frames read into one buffer, items older than LastSeq dropped as
// duplicates, a gap (first new seq != LastSeq+1) ends the session and the next
// Hello asks from LastSeq+1. Error SeqGone restarts from the seq the root
// names (the skipped seqs are logged and counted as lost); SeqFuture and other
// errors reconnect with backoff; no frame for IdleTimeout reconnects. A second
// goroutine sends TimeReq every ClockInterval; Clock (clock.go) estimates the
// root's clock offset from the min-RTT sample of a window. With several
// roots the lines take turns under Child.relayMu, one read's frames at a
// time, so the first copy of a seq is applied and later ones are dropped as
// duplicates; a line whose root answers SeqGone while another line streams
// retries with backoff instead of skipping, and every line waiting to
// retry tries at once when the last streaming line goes down; until that
// line delivers again or a session of it fails (at most a grace), none
// skips the seqs it may still deliver (arbiter.go).
//
// frames.Core is pure: decode, AppendTextFrame once per item
// (stamps exch, rootRecv, rootSend, childRecv; child send is patched per loop
// at drain time), a bounded frame history for RESUME and a last-value image
// per symbol for SUB (last SD, SS, NP, TR, ST, CP frame and the aggregated
// book, rendered as one BK frame with every held level as "new"; orders are
// not imaged). Its steady state allocates nothing per item.
//
// # Loops and consistency
//
// Each gnet event loop owns a session.Loop and its fanout: symbol hash (xxhash of the
// canonical symbol text, "00001") -> subscribers, plus "*" subscribers, and
// the clients on that loop. The session publishes each Batch to every loop's
// queue under a mutex and signals the loop with EventLoop.Execute only when
// the queue was empty: Execute's own ordering never matters, the loop drains
// its queue in order. Commands run in OnTraffic on the same loop, between
// drains. SUB takes the image and the core's LastSeq P under the core's read
// lock and subscribes with "deliver seq > P": frames still queued that the
// image covers are skipped, later ones all flow, so the client sees image,
// "OK SUB sym P", then every update > P in order, no gap, no duplicate.
// "SUB *" sends the image of every symbol (in symbol order), then
// "OK SUB * P" and every update > P; it builds the image in parts (a hold
// of the read lock each) followed by the updates each part missed
// (Core.AppendMissed), so the image still ends exactly at P. RESUME does
// the same with the history (from its seq to P, in parts too), "ERR GONE"
// when the seq is older than held. A client
// gets each frame once even if both "*" and the symbol match.
//
// Slow clients: after each Write, unsent bytes (Conn.Buffered) over MaxPending apply
// Config.SlowPolicy to that client only. A reply the client asked for (a
// SUB's image, megabytes for "*") gets a grace of its own size until the
// buffer drains below MaxPending. Disconnect (the default) sends "ERR SLOW"
// (best effort: closing discards unsent bytes) and closes it. Conflate
// marks it stale: fanout skips it, and after each drain (and every 100 ms
// on a quiet feed) the loop checks its stale clients (resync): one whose backlog is down to MaxPending/4 gets
// "ERR CONFLATED", then the images and OKs of its subscriptions again, and
// is re-armed from P, exactly as a SUB; every update it missed is conflated
// into the images (a SUB or RESUME it sends while stale only changes its
// subscriptions: the resync answers for them). A client still stale after
// SlowTimeout is disconnected.
//
// Lines over wire.MaxLineLen get ERR TOOLONG and a close; more than
// MaxCommandsPerSec lines in a second get ERR FLOOD and a close; bad lines
// get ERR BADCMD/BADARG and the connection lives.
//
// Binding ":0": gnet keeps the resolved listen address to itself, so OnBoot
// asks internal/gnetaddr (a dup of the listener fd); Addr reports it once
// Ready is closed.
//
// Locks: Child.relayMu serializes the relay lines; frames.Shared guards the
// core (a relay line writes per relay frame, loops read snapshots), each
// hold taken and released inside one Read or Write; loop.mu guards one
// loop's queue. A batch is published outside the core's lock, so loop.mu
// is never held with it (relayMu is, on the way in: relayMu -> loop.mu).
package child
