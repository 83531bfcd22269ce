package session

import (
	"math"
	"slices"
	"sync/atomic"
	"unsafe"

	"tickrelay/child/frames"
	"tickrelay/internal/prefault"
	"tickrelay/wire"
)

// subEntry is one subscription in a loop's index: deliver frames of the
// symbol with seq > from to cl.
type subEntry struct {
	cl   *Client
	from uint64
}

// delivery is one frame handed to one client since the last flush:
// arena[off:end]. next is the index+1 in fanout.sent of the same client's
// next delivery (0: none yet), so each client's frames form a list.
type delivery struct{ off, end, next int32 }

// fanout is the per-loop subscription index and drain logic. It is owned by
// one event loop and touched only there (no locks); it does no I/O: add
// hands each frame to its subscribers and lists the clients that have
// something to write, take lays out one client's frames for its Write.
//
// Frames live in arena until the flush; a delivery is a 12-byte reference
// into it. Clients own no output buffers: a client's frames are gathered
// into one shared buffer (out) only when it is written. Per-client buffers
// grown under load were fresh memory, and a burst that first doubled them
// all took a page fault per client page (~14 µs each on the VMs measured),
// stalling a drain of 35k frames for 300 ms. The loop's few buffers are
// reused and, when they grow, populated in bulk (prefault.Grow).
type fanout struct {
	index  map[uint64][]subEntry // symbol hash -> subscribers
	all    []subEntry            // "*" subscribers
	tick   uint64                // frame counter: a client gets each frame once
	dirty  []*Client             // clients with deliveries, in first-delivery order
	arena  []byte                // this loop's copy of the frames since the last flush
	sent   []delivery            // deliveries since the last flush
	out    []byte                // one client's frames, laid out by take
	gather bool                  // take appends to out: a Batch holds every take until the flush
	frames uint64                // frames handed to clients (for metrics)
	// Queue groups (group.go): the loop's state, and the items handed to
	// members and lost to members gone since the last flush.
	groups *groupState
	nsubs  atomic.Int64 // subscriptions held (read from other goroutines)
}

func newFanout() *fanout { return &fanout{index: make(map[uint64][]subEntry)} }

// parked is the from of a stale client's subscriptions: add passes over
// them on the seq alone, without touching the client (a thousand stale
// "*" clients otherwise cost a thousand client reads per frame).
const parked = math.MaxUint64

// park stops every subscription of cl (stale) until restart.
func (f *fanout) park(cl *Client) {
	for h := range cl.subs {
		f.index[h][entryOf(f.index[h], cl)].from = parked
	}
	if cl.all {
		f.all[entryOf(f.all, cl)].from = parked
	}
}

// subscribe adds (or re-arms) cl's subscription to hash (the canonical
// symbol sym, kept for conflation's resync) from seq from on; a stale
// client's is parked.
func (f *fanout) subscribe(cl *Client, hash uint64, sym []byte, all bool, from uint64) {
	if cl.stale {
		from = parked
	}
	cl.maxFrom = max(cl.maxFrom, from)
	if all {
		if cl.all {
			f.all[entryOf(f.all, cl)].from = from
			return
		}
		cl.all = true
		f.all = append(f.all, subEntry{cl, from})
		f.nsubs.Add(1)
		return
	}
	if _, ok := cl.subs[hash]; ok {
		l := f.index[hash]
		l[entryOf(l, cl)].from = from
		return
	}
	if cl.subs == nil {
		cl.subs = make(map[uint64][]byte)
	}
	cl.subs[hash] = append([]byte(nil), sym...)
	f.index[hash] = append(f.index[hash], subEntry{cl, from})
	f.nsubs.Add(1)
}

// covered raises the from of cl's named subscriptions to at least p: an
// answer to "*" (every image, or the history) up to p covered them too, so
// their queued frames up to p are not due again.
func (f *fanout) covered(cl *Client, p uint64) {
	cl.maxFrom = max(cl.maxFrom, p)
	for h := range cl.subs {
		e := &f.index[h][entryOf(f.index[h], cl)]
		e.from = max(e.from, p)
	}
}

// rearm raises the from of every subscription of cl to at least p: it has
// every frame due up to p.
func (f *fanout) rearm(cl *Client, p uint64) {
	f.covered(cl, p)
	if cl.all {
		e := &f.all[entryOf(f.all, cl)]
		e.from = max(e.from, p)
	}
}

// restart sets the from of every subscription of cl to p: a conflated
// client's resync answers them all from p on. A stale client's stay parked.
func (f *fanout) restart(cl *Client, p uint64) {
	if cl.stale {
		f.park(cl)
		return
	}
	cl.maxFrom = p
	for h := range cl.subs {
		f.index[h][entryOf(f.index[h], cl)].from = p
	}
	if cl.all {
		f.all[entryOf(f.all, cl)].from = p
	}
}

// wants reports whether a frame (seq, hash) is due to cl under its
// subscriptions. Past maxFrom the symbol alone decides; before it (the few
// seqs a fresh SUB's image covered) the subscription's own from does. On
// "*", the client's grant has a say too (a named symbol was granted at
// its SUB).
func (f *fanout) wants(cl *Client, seq, hash uint64, frame []byte) bool {
	_, named := cl.subs[hash]
	if len(cl.groups) > 0 && f.ownsFrame(cl, seq, frame) {
		return true
	}
	if seq > cl.maxFrom {
		return named || cl.all && cl.grant.AllowsFrame(frame)
	}
	if cl.all && seq > f.all[entryOf(f.all, cl)].from && cl.grant.AllowsFrame(frame) {
		return true
	}
	if named {
		l := f.index[hash]
		return seq > l[entryOf(l, cl)].from
	}
	return false
}

// entryOf returns the index of cl's entry in l (a client has at most one
// per list), -1 if it has none. Every client in cl.subs (or with cl.all)
// has one in that symbol's list (or in f.all).
func entryOf(l []subEntry, cl *Client) int {
	return slices.IndexFunc(l, func(e subEntry) bool { return e.cl == cl })
}

func removeEntry(l []subEntry, cl *Client) []subEntry {
	i := entryOf(l, cl)
	if i < 0 {
		return l
	}
	l[i] = l[len(l)-1]
	l[len(l)-1] = subEntry{}
	return l[:len(l)-1]
}

// unsubscribe removes cl's subscription to hash (or to "*").
func (f *fanout) unsubscribe(cl *Client, hash uint64, all bool) {
	if all {
		if cl.all {
			cl.all = false
			f.all = removeEntry(f.all, cl)
			f.nsubs.Add(-1)
		}
		return
	}
	if _, ok := cl.subs[hash]; !ok {
		return
	}
	delete(cl.subs, hash)
	f.nsubs.Add(-1)
	if l := removeEntry(f.index[hash], cl); len(l) == 0 {
		delete(f.index, hash)
	} else {
		f.index[hash] = l
	}
}

// remove drops every subscription of cl.
func (f *fanout) remove(cl *Client) {
	for h := range cl.subs {
		f.unsubscribe(cl, h, false)
	}
	f.unsubscribe(cl, 0, true)
}

// add copies b into the arena, stamps its frames with child send time now
// and hands each to its subscribers, in seq order.
func (f *fanout) add(b *frames.Batch, now int64) {
	// One private copy per loop so the child send stamp can be patched
	// without racing the other loops reading the shared batch.
	base := int32(len(f.arena))
	f.arena = append(prefault.Grow(f.arena, len(b.Buf)), b.Buf...)
	for i := range b.Frames {
		fr := &b.Frames[i]
		off, end := base+fr.Off, base+fr.End
		wire.SetChildSend(f.arena[off:end], now)
		f.tick++
		for _, e := range f.index[fr.Hash] {
			if fr.Seq > e.from {
				f.deliver(e.cl, off, end)
			}
		}
		code, parsed, known := uint32(0), false, false // the frame's symbol, read once for the "*" clients with a grant
		for _, e := range f.all {
			if fr.Seq <= e.from {
				continue
			}
			if g := e.cl.grant; g != nil { // nil: everything
				if !parsed {
					code, known = wire.TextFrameCode(f.arena[off:end])
					parsed = true
				}
				if !known || !g.Allows(code) {
					continue
				}
			}
			f.deliver(e.cl, off, end)
		}
		if gs := f.groups; gs != nil && (len(gs.local) > 0 || len(gs.gone) > 0) {
			if !parsed {
				code, known = wire.TextFrameCode(f.arena[off:end])
				parsed = true
			}
			if known {
				f.groupDeliveries(gs, fr.Seq, code, off, end)
			}
		}
	}
}

func (f *fanout) deliver(cl *Client, off, end int32) {
	if cl.tick == f.tick || cl.dead || cl.stale {
		return
	}
	cl.tick = f.tick
	if cl.behind { // owed, not copied: it catches up from the history
		cl.backlog += int(end - off)
		return
	}
	f.sent = append(prefault.Grow(f.sent, 1), delivery{off: off, end: end})
	n := int32(len(f.sent))
	if cl.last == 0 {
		f.dirty = append(f.dirty, cl)
		cl.first = n
	} else {
		f.sent[cl.last-1].next = n
	}
	cl.last = n
	f.frames++
}

// take returns cl's frames since the last flush, back to back, and forgets
// them. The bytes are valid until the next take (until flushed, with
// gather) or flushed.
func (f *fanout) take(cl *Client) []byte {
	i := cl.first
	cl.first, cl.last = 0, 0
	if i == 0 {
		return nil
	}
	if d := f.sent[i-1]; d.next == 0 { // most clients: one frame, no copy
		return f.arena[d.off:d.end]
	}
	start := 0
	if f.gather { // a batch holds the earlier takes until the flush
		start = len(f.out)
	}
	f.out = f.out[:start]
	for ; i != 0; i = f.sent[i-1].next {
		d := f.sent[i-1]
		f.out = append(prefault.Grow(f.out, int(d.end-d.off)), f.arena[d.off:d.end]...)
	}
	return f.out[start:]
}

// flushed forgets the deliveries and the arena once every dirty client has
// been taken. Buffers grown past their bound by a burst are dropped rather
// than kept for the next one.
func (f *fanout) flushed() {
	for i := range f.dirty {
		f.dirty[i] = nil
	}
	f.dirty = f.dirty[:0]
	f.arena = truncate(f.arena, maxKeptArena)
	f.sent = truncate(f.sent, maxKeptArena/int(unsafe.Sizeof(delivery{})))
	f.out = truncate(f.out, maxKeptArena)
}

// truncate empties s, dropping its array when it holds over max elements.
func truncate[T any](s []T, max int) []T {
	if cap(s) > max {
		return nil
	}
	return s[:0]
}

// maxKeptArena is the most bytes a loop keeps in each of its buffers
// between flushes (a drainChunk of frames is about 13 MiB).
const maxKeptArena = 32 << 20
