package feed

import (
	"sync"
	"sync/atomic"

	"tickrelay/internal/prefault"
)

// Segment bounds. A segment holds complete frames (length prefix included)
// back to back in a buffer that is allocated once and never moves, so
// readers can read published bytes without a lock.
const (
	segBytes = 4 << 20
	segMsgs  = 1 << 16
	maxFrame = 2 + 1500 // wire.FeedLenSize + wire.MaxFeedBody
)

type segment struct {
	first uint64   // seq of offs[0]
	buf   []byte   // len segBytes; frames at [offs[i], offs[i+1])
	offs  []uint32 // len segMsgs+1; offs[0] = 0
	n     int      // frames written (writer only)
	// sealed is the final frame count once the writer has moved on to the
	// next segment, -1 before. It is stored before any frame of the next
	// segment is published.
	sealed atomic.Int64
}

// contains reports whether seq (<= head) is in s.
func (s *segment) contains(seq uint64) bool {
	if seq < s.first {
		return false
	}
	i := seq - s.first
	if n := s.sealed.Load(); n >= 0 {
		return i < uint64(n)
	}
	return i < segMsgs
}

// history is the append-only log of generated frames.
//
// Concurrency: one writer (the generator goroutine) appends frames and then
// publishes them with head.Store; readers only read frames with seq <=
// head.Load(), whose bytes and offsets were written before that store and
// are never written again. mu guards the segs slice (appending a segment,
// dropping the oldest); readers take it only to find a segment.
type history struct {
	head   atomic.Uint64 // highest published seq
	bytes  atomic.Uint64 // bytes held
	retain uint64        // keep at least this many frames (0: all)

	mu     sync.RWMutex
	segs   []*segment // oldest first
	oldest uint64     // first seq held (1 until retention drops a segment)

	cur *segment // writer's current segment (writer only)
}

func newHistory(retain uint64) *history {
	return &history{retain: retain, oldest: 1}
}

// reserve returns the buffer the next frame (of at most maxFrame bytes)
// must be appended to, as a zero-length slice with room for it. The writer
// then calls commit with the frame's length.
func (h *history) reserve(seq uint64) []byte {
	s := h.cur
	if s == nil || s.n == segMsgs || segBytes-int(s.offs[s.n]) < maxFrame {
		if s != nil {
			s.sealed.Store(int64(s.n))
		}
		s = &segment{first: seq, buf: make([]byte, segBytes), offs: make([]uint32, segMsgs+1)}
		prefault.Populate(s.buf) // faulting pages in one by one costs more than writing them
		prefault.Slice(s.offs)
		s.sealed.Store(-1)
		h.mu.Lock()
		h.segs = append(h.segs, s)
		h.trimLocked()
		h.mu.Unlock()
		h.cur = s
	}
	off := s.offs[s.n]
	return s.buf[off:off:segBytes]
}

// commit records a frame of n bytes written at the reserved place. The
// frame is visible to readers only after publish.
func (h *history) commit(n int) {
	s := h.cur
	s.offs[s.n+1] = s.offs[s.n] + uint32(n)
	s.n++
	h.bytes.Add(uint64(n))
}

// publish makes every committed frame up to seq visible.
func (h *history) publish(seq uint64) { h.head.Store(seq) }

// trimLocked drops the oldest segments while the rest still hold retain
// frames. Sessions still reading a dropped segment keep it alive until they
// move on.
func (h *history) trimLocked() {
	if h.retain == 0 {
		return
	}
	for len(h.segs) > 2 {
		// Frames held without the oldest segment: everything from segs[1].first on.
		next := h.segs[1].first
		held := h.head.Load() + 1 - next
		if held < h.retain {
			break
		}
		h.bytes.Add(^uint64(h.segs[0].offs[h.segs[0].n] - 1))
		h.segs[0] = nil
		h.segs = h.segs[1:]
		h.oldest = next
	}
}

// oldestSeq is the first seq still held.
func (h *history) oldestSeq() uint64 {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.oldest
}

// find returns the segment holding seq (which must be <= head), or nil if
// it was dropped.
func (h *history) find(seq uint64) *segment {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if seq < h.oldest {
		return nil
	}
	lo, hi := 0, len(h.segs)
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		if h.segs[mid].first <= seq {
			lo = mid
		} else {
			hi = mid
		}
	}
	if lo >= len(h.segs) {
		return nil
	}
	return h.segs[lo]
}

// frames returns the frames from seq on held contiguously in s, up to last
// and at most limit bytes (but at least one frame), and the seq after them.
// The caller guarantees s.contains(seq) and seq <= last <= head.
func (s *segment) frames(seq, last uint64, limit int) ([]byte, uint64) {
	i := int(seq - s.first)
	j := segMsgs // one past the last index to return
	if n := s.sealed.Load(); n >= 0 {
		j = int(n)
	}
	if last-s.first < uint64(j) {
		j = int(last-s.first) + 1
	}
	start := s.offs[i]
	end := i + 1
	for end < j && int(s.offs[end+1]-start) <= limit {
		end++
	}
	return s.buf[start:s.offs[end]], s.first + uint64(end)
}

// body returns the body of the frame seq, or false if not held.
func (h *history) body(seq uint64) ([]byte, bool) {
	if seq == 0 || seq > h.head.Load() {
		return nil, false
	}
	s := h.find(seq)
	if s == nil {
		return nil, false
	}
	i := seq - s.first
	return s.buf[s.offs[i]+2 : s.offs[i+1]], true
}

// start makes first the first seq of an empty history (head first-1), for
// a Source whose stream does not begin at 1. Called before any publish.
func (h *history) start(first uint64) {
	h.mu.Lock()
	h.oldest = first
	h.mu.Unlock()
	h.head.Store(first - 1)
}
