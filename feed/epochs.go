package feed

import (
	"sync"

	"tickrelay/wire"
)

// Epochs. The simulator numbers its items from 1 again in each epoch (a
// new trading day at each start unless Config.Epoch pins it, and a
// Sequence Reset every ResetEvery items or after item ResetAt). The
// history holds every frame in one index space, the Sequence Reset frames
// among them, so a session streaming across a reset sends the reset where
// it happened; an epochBook maps (epoch, seq) to history indexes.

// epochStart is where an epoch begins: its first item is at history index
// index with seq seq (its Sequence Reset, after the first epoch, just
// before it).
type epochStart struct {
	epoch      uint32
	index, seq uint64
}

// epochBook is the list of epochs in the history, oldest first. One writer
// (the generator or the Source) appends; sessions read.
type epochBook struct {
	mu     sync.RWMutex
	starts []epochStart
}

// begin records that epoch starts at history index with seq.
func (b *epochBook) begin(epoch uint32, index, seq uint64) {
	b.mu.Lock()
	b.starts = append(b.starts, epochStart{epoch, index, seq})
	b.mu.Unlock()
}

// at is the epoch holding history index i, and i's seq in it (for a reset
// frame: one past the last seq of the epoch it ends).
func (b *epochBook) at(i uint64) (epoch uint32, seq uint64) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	k := len(b.starts) - 1
	for k > 0 && b.starts[k].index > i {
		k--
	}
	st := b.starts[k]
	return st.epoch, st.seq + i - st.index
}

// locate maps a logon's (epoch, seq) to the history index to stream from
// and the (epoch, seq) it carries there. An epoch the book has maps
// directly, up to one past its last item (its successor's reset frame);
// ok is false past that, or for seq before the epoch's start. Epoch 0 is
// the current one. An epoch the book does not have starts at the first
// later epoch's start; ok is false when there is none.
func (b *epochBook) locate(epoch uint32, seq uint64) (index uint64, at epochStart, ok bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if epoch == 0 {
		epoch = b.starts[len(b.starts)-1].epoch
	}
	for k, st := range b.starts {
		switch {
		case st.epoch < epoch:
			continue
		case st.epoch > epoch: // not in the book: the next one from its start
			return st.index, st, true
		}
		if seq < st.seq {
			return 0, st, false
		}
		i := st.index + seq - st.seq
		if k+1 < len(b.starts) && i > b.starts[k+1].index-1 {
			return 0, epochStart{st.epoch, b.starts[k+1].index - 1, b.starts[k+1].index - 1 - st.index + st.seq}, false
		}
		return i, epochStart{st.epoch, i, seq}, true
	}
	return 0, b.starts[len(b.starts)-1], false
}

// first is the history index the book's first epoch starts at.
func (b *epochBook) first() uint64 {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.starts[0].index
}

// restart makes the book one epoch starting at index with seq (before
// anything is published).
func (b *epochBook) restart(epoch uint32, index, seq uint64) {
	b.mu.Lock()
	b.starts = append(b.starts[:0], epochStart{epoch, index, seq})
	b.mu.Unlock()
}

// current is the newest epoch.
func (b *epochBook) current() uint32 {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.starts[len(b.starts)-1].epoch
}

// commitReset puts the Sequence Reset that starts epoch at seq next at
// history index idx (the writer's next), and books the epoch from idx+1.
// It is visible to sessions at the next publish.
func (s *Server) commitReset(idx uint64, epoch uint32, next uint64, sendTime int64) {
	s.hist.commit(len(wire.AppendSequenceReset(s.hist.reserve(idx), wire.SequenceReset{Epoch: epoch, NextSeq: next}, sendTime)))
	s.book.begin(epoch, idx+1, next)
}
