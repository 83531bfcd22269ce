package root

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"

	"tickrelay/internal/prefault"
	"tickrelay/wire"
)

// ErrGone means the requested seq has been overwritten (it is older than
// Ring.First), or is of an epoch the ring does not hold.
var ErrGone = errors.New("root: seq no longer in the ring")

// ErrEpochEnd means the requested seq is one past the last of its epoch,
// and the ring holds a later one (NextEpoch).
var ErrEpochEnd = errors.New("root: seq past the end of its epoch")

// Ring is the sequence-indexed window of the most recent feed items.
//
// Seqs are positions (wire.Pos: epoch and seq). The ring numbers its items
// across epochs with ordinals, contiguous [first, head]; an item's ordinal
// is its seq plus its epoch's base, and it lives in slot ordinal & mask. So
// when the exchange starts a new epoch the last one's items stay, for the
// children still sending them, until they are overwritten.
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
	first uint64   // oldest ordinal held; head+1 when empty
	head  uint64   // newest ordinal held
	eps   []ringEpoch
	used  bool // something was appended since NewRing
}

// ringEpoch is an epoch the ring holds (or starts): its items' ordinals
// are seq+base (mod 2^64), from start on.
type ringEpoch struct {
	epoch       uint32
	base, start uint64
}

// slot locates one item: slabs[slab][off:off+n], in room of c bytes (c is 0
// for a slot never written).
type slot struct{ slab, off, n, c uint32 }

// NewRing returns a ring of size slots; size must be a power of two >= 2.
func NewRing(size int) (*Ring, error) {
	if size < 2 || size&(size-1) != 0 {
		return nil, fmt.Errorf("root: ring size %d is not a power of two >= 2", size)
	}
	r := &Ring{mask: uint64(size - 1), slots: make([]slot, size), first: 1, eps: []ringEpoch{{start: 1}}}
	prefault.Slice(r.slots)
	return r, nil
}

// Size returns the number of slots.
func (r *Ring) Size() int { return len(r.slots) }

// First returns the oldest seq held, or Head()+1 when the ring is empty.
func (r *Ring) First() uint64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.firstPos()
}

// Head returns the seq before the next Append's: the newest held, or in a
// new epoch with nothing yet, its first seq - 1 (0 before anything).
func (r *Ring) Head() uint64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.headPos()
}

// Bounds returns First and Head read together.
func (r *Ring) Bounds() (first, head uint64) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.firstPos(), r.headPos()
}

func (r *Ring) headPos() uint64 {
	e := r.eps[len(r.eps)-1]
	return wire.Pos(e.epoch, r.head-e.base)
}

func (r *Ring) firstPos() uint64 {
	if r.first > r.head {
		return r.headPos() + 1
	}
	for k := len(r.eps) - 1; ; k-- {
		if e := r.eps[k]; e.start <= r.first || k == 0 {
			return wire.Pos(e.epoch, r.first-e.base)
		}
	}
}

// locate finds the ordinal of seq: k is its epoch's index in eps (-1: not
// held), end the last ordinal of that epoch.
func (r *Ring) locate(seq uint64) (ord uint64, k int, end uint64) {
	for k = len(r.eps) - 1; k >= 0; k-- {
		if e := r.eps[k]; e.epoch == wire.PosEpoch(seq) {
			end = r.head
			if k+1 < len(r.eps) {
				end = r.eps[k+1].start - 1
			}
			return wire.PosSeq(seq) + e.base, k, end
		}
	}
	return 0, -1, 0
}

// EpochEmpty reports whether the ring holds nothing of its newest epoch.
func (r *Ring) EpochEmpty() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.head < r.eps[len(r.eps)-1].start
}

// NextEpoch returns the first seq held of the first epoch after seq's
// (false: none).
func (r *Ring) NextEpoch(seq uint64) (uint64, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, e := range r.eps {
		if e.epoch > wire.PosEpoch(seq) && e.start <= r.head {
			return wire.Pos(e.epoch, max(e.start, r.first)-e.base), true
		}
	}
	return 0, false
}

// Fresh reports whether the ring has never held an item.
func (r *Ring) Fresh() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.head == 0
}

// HoldsEpoch reports whether the ring holds items of epoch.
func (r *Ring) HoldsEpoch(epoch uint32) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for k, e := range r.eps {
		end := r.head
		if k+1 < len(r.eps) {
			end = r.eps[k+1].start - 1
		}
		if e.epoch == epoch && max(e.start, r.first) <= end {
			return true
		}
	}
	return false
}

// Reset empties the ring so that the next Append may carry seq next.
func (r *Ring) Reset(next uint64) {
	r.mu.Lock()
	r.first = r.head + 1
	r.eps = append(r.eps[:0], ringEpoch{wire.PosEpoch(next), r.first - wire.PosSeq(next), r.first})
	r.used = true
	r.mu.Unlock()
}

// Begin starts a later epoch at seq next (a position): the next Append
// carries it, and what the ring holds of the earlier ones stays.
func (r *Ring) Begin(next uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := ringEpoch{wire.PosEpoch(next), r.head + 1 - wire.PosSeq(next), r.head + 1}
	if last := &r.eps[len(r.eps)-1]; r.head < last.start { // the last started empty
		*last = e
	} else {
		r.eps = append(r.eps, e)
	}
	r.used = true
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
	sl, err := r.advance(seq)
	if err != nil {
		return err
	}
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
	sl, err := r.advance(seq)
	if err != nil {
		return err
	}
	sl.n = uint32(len(append(r.room(sl, len(item)), item...)))
	return nil
}

// advance makes room for seq and returns its slot; mu must be held for
// writing.
func (r *Ring) advance(seq uint64) (*slot, error) {
	e := &r.eps[len(r.eps)-1]
	switch {
	case seq == 0:
		return nil, errors.New("root: ring append seq 0")
	case !r.used: // the first item ever may start anywhere
		r.used = true
		e.epoch, e.base = wire.PosEpoch(seq), e.start-wire.PosSeq(seq)
	case wire.PosEpoch(seq) != e.epoch || wire.PosSeq(seq)+e.base != r.head+1:
		return nil, fmt.Errorf("root: ring append epoch %d seq %d, want epoch %d seq %d", wire.PosEpoch(seq), wire.PosSeq(seq), e.epoch, r.head+1-e.base)
	}
	r.head++
	if r.head-r.first >= uint64(len(r.slots)) {
		r.first = r.head - uint64(len(r.slots)) + 1
		for len(r.eps) > 1 && r.eps[1].start <= r.first { // an epoch overwritten whole
			r.eps = r.eps[1:]
		}
	}
	return &r.slots[r.head&r.mask], nil
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
	ord, k, end := r.locate(seq)
	if k < 0 || ord < max(r.first, r.eps[k].start) || ord > end {
		return dst, false
	}
	return append(dst, r.item(r.slots[ord&r.mask])...), true
}

// AppendBatch appends to dst one relay batch frame holding the items from
// seq from on, as many as fit in maxItemBytes of items (at least one), up to
// Head. The batch's rootSend stamp is rootSend, raised if needed to the
// newest rootRecv in the batch (a wall clock may step back). It returns the
// extended dst and the number of items, all of from's epoch; n is 0 (and
// dst unchanged) when from is beyond Head. err is ErrGone when from is not
// held (older than First, or of an epoch the ring does not have), and
// ErrEpochEnd when from is one past its epoch's last and a later epoch
// follows.
func (r *Ring) AppendBatch(dst []byte, from uint64, maxItemBytes int, rootSend int64) (out []byte, n int, err error) {
	return r.AppendBatchTo(dst, from, math.MaxUint64, maxItemBytes, rootSend)
}

// AppendBatchTo is AppendBatch of the items up to position to at most (a
// control record placed after it goes next).
func (r *Ring) AppendBatchTo(dst []byte, from, to uint64, maxItemBytes int, rootSend int64) (out []byte, n int, err error) {
	if to < from {
		return dst, 0, nil
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	ord, k, end := r.locate(from)
	switch {
	case k < 0 && from > r.headPos():
		return dst, 0, nil
	case k < 0 || ord < max(r.first, r.eps[k].start) || ord > end+1:
		return dst, 0, ErrGone
	case ord == end+1 && k+1 < len(r.eps):
		return dst, 0, ErrEpochEnd
	case ord > end:
		return dst, 0, nil
	}
	if wire.PosEpoch(to) == wire.PosEpoch(from) {
		end = min(end, ord+(to-from))
	}
	dst, at := wire.BeginBatch(dst, wire.PosEpoch(from), rootSend)
	start, maxRecv := len(dst), rootSend
	for o := ord; o <= end; o++ {
		s := r.item(r.slots[o&r.mask])
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
