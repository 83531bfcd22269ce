// Package latency holds tickrelay's per-hop latency histograms: Hops (one
// HDR histogram per hop), Recorder (its sharded, locked form, one shard per
// writer) and Collector, which exposes either to Prometheus with classic and
// native buckets computed from the HDR counts at scrape time. The daemons
// record the hops they see; perf and `sub -stats` record the client's.
//
// Every frame a client receives carries five stamps (wire.Stamps); the client
// adds its receive time. Hops derives:
//
//	exch->root     RootRecv   - ExchSend
//	root->child    ChildRecv  - RootSend - offset   (offset = child clock - root clock)
//	child          ChildSend  - ChildRecv           (inside the child: parse, queue, fan-out)
//	child->client  clientRecv - ChildSend
//	end-to-end     clientRecv - ExchSend
//
// A peer's frame has only the publisher's stamp: the send time, or the time
// the message was due when the server held the publisher back (perf's dueStamp), so
// end-to-end includes that backlog as tickrelay's does. A zero stamp means
// "not taken", so the hops needing it are skipped; a hop that comes out negative
// or above MaxLatency counts in that hop's errors and is not recorded.
//
// A child records the hops it sees itself in a Recorder exposed with a
// Collector on its admin port (tickrelay_child_hop_latency_seconds):
// exch->root and root->child once per item as it arrives (root->child
// corrected with the child's clock offset estimate, child.Clock), and the
// child hop once per frame and event loop as each loop stamps ChildSend.
package latency
