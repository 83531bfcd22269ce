package frames

import "tickrelay/internal/prefault"

// history is the frame ring RESUME reads: the text frames of a contiguous
// run of ordinals [first, next) (the Core numbers frames across epochs:
// seq + the epoch's base; "seq" below means that number), bounded by a slot count (a power of two) and a
// byte buffer. Frames are stored back to back in buf; a frame that does not
// fit before the end wraps to offset 0. The oldest frames are evicted when
// the slots run out or their bytes are about to be overwritten.
//
// Invariant: frames of the previous lap that are still held all start at or
// after w, in seq order, so eviction from the oldest end is enough.
type history struct {
	slots       []histSlot
	mask        uint64
	first, next uint64 // held seqs; first == next means empty
	buf         []byte
	w           int
}

type histSlot struct {
	hash   uint64 // xxhash of the symbol; 0 for an item that made no frame
	off, n int32
}

// newHistory makes the ring with its memory populated up front: the first
// lap would otherwise fault in a page every ~20 frames (internal/prefault).
func newHistory(frames, bytes int) *history {
	n := 1
	for n < frames {
		n <<= 1
	}
	h := &history{slots: make([]histSlot, n), mask: uint64(n - 1), buf: make([]byte, bytes)}
	prefault.Slice(h.slots)
	prefault.Populate(h.buf)
	return h
}

func (h *history) len() uint64 { return h.next - h.first }

func (h *history) reset(seq uint64) { h.first, h.next, h.w = seq, seq, 0 }

func (h *history) evict() {
	h.first++
}

// add stores the frame of seq; a seq that does not follow the last one held
// starts a new run. An empty frame records that seq made no frame.
func (h *history) add(seq, hash uint64, frame []byte) {
	if seq != h.next {
		h.reset(seq)
	}
	if h.len() == uint64(len(h.slots)) {
		h.evict()
	}
	n := len(frame)
	if n > len(h.buf) {
		n, hash = 0, 0 // cannot hold it; record the seq without a frame
	}
	if h.w+n > len(h.buf) {
		old := h.w
		for h.first != h.next && int(h.slots[h.first&h.mask].off) >= old {
			h.evict()
		}
		h.w = 0
	}
	for h.first != h.next {
		s := &h.slots[h.first&h.mask]
		if int(s.off) >= h.w && int(s.off) < h.w+n {
			h.evict()
			continue
		}
		break
	}
	copy(h.buf[h.w:], frame[:n])
	h.slots[seq&h.mask] = histSlot{hash: hash, off: int32(h.w), n: int32(n)}
	h.w += n
	h.next = seq + 1
}

// scan calls fn for each held frame with seq >= from in order until fn
// returns false. Items that made no frame are skipped. frame aliases the ring.
func (h *history) scan(from uint64, fn func(seq, hash uint64, frame []byte) bool) {
	for s := max(from, h.first); s < h.next; s++ {
		sl := &h.slots[s&h.mask]
		if sl.n == 0 {
			continue
		}
		if !fn(s, sl.hash, h.buf[sl.off:sl.off+sl.n]) {
			return
		}
	}
}
