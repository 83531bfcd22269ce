package frames

import (
	"sync"
	"sync/atomic"
)

// Shared is the child's one Core, written by the relay lines (one at a
// time) and read by every event loop. Each method takes and releases the
// lock itself; fn runs under it, so what fn reads of the core (an image, a
// history part) and the LastSeq it sees belong to one moment of the stream.
type Shared struct {
	mu    sync.RWMutex
	core  *Core
	last  atomic.Uint64 // the core's LastSeq, for lock-free readers
	epoch atomic.Uint32 // the core's Epoch, likewise
}

// NewShared guards c.
func NewShared(c *Core) *Shared {
	s := &Shared{core: c}
	s.last.Store(c.LastSeq())
	s.epoch.Store(c.Epoch())
	return s
}

// Epoch is the epoch of the items applied, without the lock.
func (s *Shared) Epoch() uint32 { return s.epoch.Load() }

// LastSeq is the seq of the last item applied, without the lock.
func (s *Shared) LastSeq() uint64 { return s.last.Load() }

// Read runs fn under the read lock.
func (s *Shared) Read(fn func(c *Core)) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	fn(s.core)
}

// Write runs fn under the write lock, then publishes the core's LastSeq.
func (s *Shared) Write(fn func(c *Core)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(s.core)
	s.last.Store(s.core.LastSeq())
	s.epoch.Store(s.core.Epoch())
}
