package child

import (
	"tickrelay/wire"
)

// subEntry is one subscription in a loop's index: deliver frames of the
// symbol with seq > from to cl.
type subEntry struct {
	cl   *client
	from uint64
}

// fanout is the per-loop subscription index and drain logic. It is owned by
// one event loop and touched only there (no locks); it does no I/O: add
// hands each frame to its subscribers and lists the clients that have
// something to write.
//
// Frames live in arena until the flush. A client with one frame in a
// flush (most clients, at per-client rates below the flush rate) only
// references it (client.one); from its second frame on they are copied
// into its pending buffer. So quiet clients never own a buffer and busy
// ones grow theirs once.
type fanout struct {
	index  map[uint64][]subEntry // symbol hash -> subscribers
	all    []subEntry            // "*" subscribers
	tick   uint64                // frame counter: a client gets each frame once
	dirty  []*client
	arena  []byte // this loop's copy of the frames since the last flush
	frames uint64 // frames handed to clients (for metrics)
}

func newFanout() *fanout { return &fanout{index: make(map[uint64][]subEntry)} }

// subscribe adds (or re-arms) cl's subscription to hash from seq from on.
func (f *fanout) subscribe(cl *client, hash uint64, all bool, from uint64) {
	if all {
		if cl.all {
			for i := range f.all {
				if f.all[i].cl == cl {
					f.all[i].from = from
				}
			}
			return
		}
		cl.all = true
		f.all = append(f.all, subEntry{cl, from})
		return
	}
	if _, ok := cl.subs[hash]; ok {
		l := f.index[hash]
		for i := range l {
			if l[i].cl == cl {
				l[i].from = from
			}
		}
		return
	}
	if cl.subs == nil {
		cl.subs = make(map[uint64]struct{})
	}
	cl.subs[hash] = struct{}{}
	f.index[hash] = append(f.index[hash], subEntry{cl, from})
}

func removeEntry(l []subEntry, cl *client) []subEntry {
	for i := range l {
		if l[i].cl == cl {
			l[i] = l[len(l)-1]
			l[len(l)-1] = subEntry{}
			return l[:len(l)-1]
		}
	}
	return l
}

// unsubscribe removes cl's subscription to hash (or to "*").
func (f *fanout) unsubscribe(cl *client, hash uint64, all bool) {
	if all {
		if cl.all {
			cl.all = false
			f.all = removeEntry(f.all, cl)
		}
		return
	}
	if _, ok := cl.subs[hash]; !ok {
		return
	}
	delete(cl.subs, hash)
	if l := removeEntry(f.index[hash], cl); len(l) == 0 {
		delete(f.index, hash)
	} else {
		f.index[hash] = l
	}
}

// remove drops every subscription of cl.
func (f *fanout) remove(cl *client) {
	for h := range cl.subs {
		f.unsubscribe(cl, h, false)
	}
	f.unsubscribe(cl, 0, true)
}

// add copies b into the arena, stamps its frames with child send time now
// and hands each to its subscribers, in seq order.
func (f *fanout) add(b *Batch, now int64) {
	// One private copy per loop so the child send stamp can be patched
	// without racing the other loops reading the shared batch. Frames
	// referenced before a regrowth keep the old array alive and unchanged.
	base := int32(len(f.arena))
	f.arena = append(f.arena, b.buf...)
	for i := range b.frames {
		fr := &b.frames[i]
		frame := f.arena[base+fr.off : base+fr.end : base+fr.end]
		wire.SetChildSend(frame, now)
		f.tick++
		for _, e := range f.index[fr.hash] {
			if fr.seq > e.from {
				f.deliver(e.cl, frame)
			}
		}
		for _, e := range f.all {
			if fr.seq > e.from {
				f.deliver(e.cl, frame)
			}
		}
	}
}

func (f *fanout) deliver(cl *client, frame []byte) {
	if cl.tick == f.tick || cl.dead {
		return
	}
	cl.tick = f.tick
	switch {
	case cl.one == nil && len(cl.pending) == 0:
		f.dirty = append(f.dirty, cl)
		cl.one = frame
	case cl.one != nil:
		cl.pending = append(append(cl.pending, cl.one...), frame...)
		cl.one = nil
	default:
		cl.pending = append(cl.pending, frame...)
	}
	f.frames++
}

// flushed resets the arena once every dirty client has written.
func (f *fanout) flushed() {
	for i := range f.dirty {
		f.dirty[i] = nil
	}
	f.dirty = f.dirty[:0]
	if cap(f.arena) > maxKeptArena {
		f.arena = nil
	} else {
		f.arena = f.arena[:0]
	}
}

// maxKeptArena is the largest arena a loop keeps between flushes (a full
// queue of batches is about maxQueued * 200 KiB).
const maxKeptArena = 32 << 20
