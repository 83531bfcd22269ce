package root

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"tickrelay/internal/prefault"
	"tickrelay/wire"
)

// ErrGone means the requested seq has been overwritten (it is older than
// Ring.First).
var ErrGone = errors.New("root: seq no longer in the ring")

// Ring is the sequence-indexed window of the most recent feed items.
//
// It holds the contiguous seqs [First, Head]; seq lives in slot seq & mask.
// Each slot keeps its item in the relay item encoding (wire.AppendRelayItem:
// rootRecv i64, bodyLen u16, body) in room of its own: Append copies into
// it, growing it only when a larger item lands there (to a size class, at
// most wire.MaxRelayItem, cut from 1 MiB slabs), so Append allocates once
// per slab while the ring fills and nothing once it is warm. The slot table
// and each new slab are populated when made (internal/prefault): otherwise
// the first lap after a start takes a page fault every few items. A slot
// that grows leaves its old room behind and at least doubles (up to
// wire.MaxRelayItem), so memory is bounded by 3 x size x wire.MaxRelayItem,
// and in practice by size x (typical item size rounded up to 64 B).
//
// The slot table holds no pointers: a slot names its slab by index. With a
// slice per slot, each GC cycle marked a million pointers (a ring of 1M
// slots): ~75 ms of CPU spread over every idle P, which at the daemons'
// priority took both CPUs of a 2-core box from the clients for tens of
// milliseconds.
//
// # Concurrency
//
// One writer (the feed goroutine) calls Append/AppendItem/Reset; any number
// of readers (gnet loops, the store catch-up goroutines) call Get,
// AppendBatch, First and Head. A sync.RWMutex guards slots, first and head:
// Append holds the write lock only for one bounded copy (<= 1.5 KB), readers
// hold the read lock while copying the slots they want into their own
// buffer. So a reader never sees a torn slot, and no reader ever keeps a
// reference into a slot after releasing the lock. No other lock is taken
// while mu is held.
type Ring struct {
	mu    sync.RWMutex
	mask  uint64
	slots []slot
	slabs [][]byte // slot room; new room is cut from the last (writer only, under mu)
	cut   int      // bytes of the last slab handed out
	first uint64   // oldest seq held; head+1 when empty
	head  uint64   // newest seq held; 0 before the first Append
}

// slot locates one item: slabs[slab][off:off+n], in room of c bytes (c is 0
// for a slot never written).
type slot struct{ slab, off, n, c uint32 }

// NewRing returns a ring of size slots; size must be a power of two >= 2.
func NewRing(size int) (*Ring, error) {
	if size < 2 || size&(size-1) != 0 {
		return nil, fmt.Errorf("root: ring size %d is not a power of two >= 2", size)
	}
	r := &Ring{mask: uint64(size - 1), slots: make([]slot, size), first: 1}
	prefault.Slice(r.slots)
	return r, nil
}

// Size returns the number of slots.
func (r *Ring) Size() int { return len(r.slots) }

// First returns the oldest seq held, or Head()+1 when the ring is empty.
func (r *Ring) First() uint64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.first
}

// Head returns the newest seq held (0 before anything was appended).
func (r *Ring) Head() uint64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.head
}

// Bounds returns First and Head read together.
func (r *Ring) Bounds() (first, head uint64) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.first, r.head
}

// Reset empties the ring so that the next Append may carry seq next.
func (r *Ring) Reset(next uint64) {
	r.mu.Lock()
	r.head = next - 1
	r.first = next
	r.mu.Unlock()
}

// Append stores the item seq, overwriting the oldest when full. seq must be
// Head()+1, or any seq >= 1 while the ring has never held anything (Head 0).
// len(body) must be at most wire.MaxFeedBody.
func (r *Ring) Append(seq uint64, rootRecv int64, body []byte) error {
	if len(body) > wire.MaxFeedBody {
		return fmt.Errorf("root: ring append seq %d: body %d > %d bytes", seq, len(body), wire.MaxFeedBody)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.advance(seq); err != nil {
		return err
	}
	sl := &r.slots[seq&r.mask]
	sl.n = uint32(len(wire.AppendRelayItem(r.room(sl, wire.RelayItemHeader+len(body)), rootRecv, body)))
	return nil
}

// AppendItem is Append for an item already in the relay item encoding (as
// Store.Range hands it out). The item is checked for consistency.
func (r *Ring) AppendItem(seq uint64, item []byte) error {
	if len(item) < wire.RelayItemHeader || len(item) != wire.RelayItemHeader+int(binary.LittleEndian.Uint16(item[8:])) || len(item) > wire.MaxRelayItem {
		return fmt.Errorf("root: ring append seq %d: malformed item of %d bytes", seq, len(item))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.advance(seq); err != nil {
		return err
	}
	sl := &r.slots[seq&r.mask]
	sl.n = uint32(len(append(r.room(sl, len(item)), item...)))
	return nil
}

// advance makes room for seq; mu must be held for writing.
func (r *Ring) advance(seq uint64) error {
	switch {
	case seq == 0:
		return errors.New("root: ring append seq 0")
	case r.head == 0 && r.first == 1:
		r.first, r.head = seq, seq // the first item ever may start anywhere
		return nil
	case seq != r.head+1:
		return fmt.Errorf("root: ring append seq %d, want %d", seq, r.head+1)
	}
	r.head = seq
	if r.head-r.first >= uint64(len(r.slots)) {
		r.first = r.head - uint64(len(r.slots)) + 1
	}
	return nil
}

// room returns sl's room emptied, first growing it to hold n bytes (to a
// 64 B class, and at least double). New room is cut from a shared slab, so
// filling the ring the first time costs one allocation per slab rather than
// one per item.
func (r *Ring) room(sl *slot, n int) []byte {
	if int(sl.c) < n {
		c := min(max((n+63)&^63, 2*int(sl.c)), wire.MaxRelayItem)
		if len(r.slabs) == 0 || r.cut+c > slabBytes {
			slab := make([]byte, slabBytes)
			prefault.Populate(slab)
			r.slabs, r.cut = append(r.slabs, slab), 0
		}
		sl.slab, sl.off, sl.c = uint32(len(r.slabs)-1), uint32(r.cut), uint32(c)
		r.cut += c
	}
	return r.slabs[sl.slab][sl.off : sl.off : sl.off+sl.c]
}

// item returns the bytes of the item in sl.
func (r *Ring) item(sl slot) []byte { return r.slabs[sl.slab][sl.off : sl.off+sl.n] }

// slabBytes is the size of the slabs slots are cut from.
const slabBytes = 1 << 20

// Get appends the relay item encoding of seq to dst. ok is false when seq
// is not held.
func (r *Ring) Get(dst []byte, seq uint64) (out []byte, ok bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if seq < r.first || seq > r.head {
		return dst, false
	}
	return append(dst, r.item(r.slots[seq&r.mask])...), true
}

// AppendBatch appends to dst one relay batch frame holding the items from
// seq from on, as many as fit in maxItemBytes of items (at least one), up to
// Head. The batch's rootSend stamp is rootSend, raised if needed to the
// newest rootRecv in the batch (a wall clock may step back). It returns the
// extended dst and the number of items; n is 0 (and dst unchanged) when from
// is beyond Head. err is ErrGone when from < First.
func (r *Ring) AppendBatch(dst []byte, from uint64, maxItemBytes int, rootSend int64) (out []byte, n int, err error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if from < r.first {
		return dst, 0, ErrGone
	}
	if from > r.head {
		return dst, 0, nil
	}
	dst, at := wire.BeginBatch(dst, wire.PosEpoch(from), rootSend)
	start, maxRecv := len(dst), rootSend
	for seq := from; seq <= r.head; seq++ {
		s := r.item(r.slots[seq&r.mask])
		if n > 0 && len(dst)-start+len(s) > maxItemBytes {
			break
		}
		if recv := int64(binary.LittleEndian.Uint64(s)); recv > maxRecv {
			maxRecv = recv
		}
		dst = append(dst, s...)
		n++
	}
	if maxRecv != rootSend {
		binary.LittleEndian.PutUint64(dst[at+wire.RelayLenSize+1:], uint64(maxRecv))
	}
	return wire.EndBatch(dst, at, n), n, nil
}
