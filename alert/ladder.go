package alert

import (
	"math"
	"slices"
)

// A ladder holds rungs (a trigger key in the high 32 bits, an alert slot in
// the low) sorted ascending, in chunks of at most rungsPerChunk: finding a
// place is two binary searches, and a change moves at most one chunk, so
// adding and removing stay O(log n) in comparisons and bounded in copying
// however many alerts one symbol holds. The alerts an update reaches are a
// prefix: those whose key is at most the update's.
type ladder struct {
	chunks [][]uint64 // each sorted and non-empty; every rung of chunk i below chunk i+1's
	// first is the lowest rung's key (MaxUint32 when empty), so an update
	// that reaches nothing reads no chunk.
	first uint32
}

func (l *ladder) setFirst() {
	l.first = math.MaxUint32
	if len(l.chunks) > 0 {
		l.first = uint32(l.chunks[0][0] >> 32)
	}
}

const rungsPerChunk = 128

func rung(key uint32, slot uint32) uint64 { return uint64(key)<<32 | uint64(slot) }

// find returns the chunk that holds r or should (the first whose last rung
// is at least r; the last chunk when r is above them all).
func (l *ladder) find(r uint64) int {
	i, _ := slices.BinarySearchFunc(l.chunks, r, func(c []uint64, r uint64) int {
		if c[len(c)-1] < r {
			return -1
		}
		return 1
	})
	return min(i, len(l.chunks)-1)
}

func (l *ladder) insert(r uint64) {
	if len(l.chunks) == 0 {
		l.chunks = append(l.chunks, append(make([]uint64, 0, 4), r))
		l.setFirst()
		return
	}
	i := l.find(r)
	c := l.chunks[i]
	j, _ := slices.BinarySearch(c, r)
	c = slices.Insert(c, j, r)
	if len(c) > rungsPerChunk { // split: the upper half gets a chunk of its own
		h := len(c) / 2
		upper := make([]uint64, len(c)-h, rungsPerChunk+1)
		copy(upper, c[h:])
		c = c[: h : rungsPerChunk+1]
		l.chunks = slices.Insert(l.chunks, i+1, upper)
	}
	l.chunks[i] = c
	l.setFirst()
}

func (l *ladder) remove(r uint64) bool {
	if len(l.chunks) == 0 {
		return false
	}
	i := l.find(r)
	c := l.chunks[i]
	j, ok := slices.BinarySearch(c, r)
	if !ok {
		return false
	}
	c = slices.Delete(c, j, j+1)
	if len(c) == 0 {
		l.chunks = slices.Delete(l.chunks, i, i+1)
	} else {
		l.chunks[i] = c
	}
	l.setFirst()
	return true
}

func (l *ladder) len() int {
	n := 0
	for _, c := range l.chunks {
		n += len(c)
	}
	return n
}

// upKey orders thresholds an update at or above reaches: ascending value.
func upKey(v int32) uint32 { return uint32(v) ^ 1<<31 }

// downKey orders thresholds an update at or below reaches: descending value.
func downKey(v int32) uint32 { return ^upKey(v) }
