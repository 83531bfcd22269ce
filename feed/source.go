package feed

import (
	"context"
	"encoding/binary"
	"fmt"

	"tickrelay/wire"
)

// Source replaces the generator when set in Config.Source (tickrelay replay
// uses it to play a capture). Run calls it once, on its own goroutine, with a
// Publisher through which it appends frames to the history that sessions
// stream; logon, retransmission, retention and heartbeats are unchanged. It
// returns when it has nothing more to publish or when ctx ends; sessions stay
// up either way. A non-nil error (ctx still live) is logged.
type Source func(ctx context.Context, p *Publisher) error

// Publisher appends frames to a Server's history for a Source. Use it from
// the Source's goroutine only.
//
//	f := append(p.Buffer(), frame...)
//	// patch f in place if needed (seq, send time), then
//	p.Commit(f)
//	p.Publish()              // after one or many commits
type Publisher struct {
	s       *Server
	next    uint64 // seq the next Commit must carry (Config.FirstSeq at first)
	idx     uint64 // history index of the last frame committed
	pending bool   // commits not yet published
}

// Started is closed once publishing may begin: at once, or with
// StartOnLogon at the first successful logon.
func (p *Publisher) Started() <-chan struct{} { return p.s.startCh }

// Next is the seq the next Commit must carry.
func (p *Publisher) Next() uint64 { return p.next }

// Buffer returns room for the next frame, a zero-length slice with capacity
// for wire.FeedLenSize+wire.MaxFeedBody bytes. Append the frame to it and
// pass the result to Commit.
func (p *Publisher) Buffer() []byte { return p.s.hist.reserve(p.idx + 1) }

// Commit adds frame, which must be the complete frame (length prefix and
// body) appended to the slice Buffer returned, with seq Next(). It becomes
// visible to sessions at the next Publish. Only the prefix and the seq are
// checked here; the Source is trusted to hand well-formed bodies.
func (p *Publisher) Commit(frame []byte) error {
	if len(frame) < wire.FeedLenSize+wire.MinFeedBody || len(frame) > maxFrame ||
		int(binary.LittleEndian.Uint16(frame)) != len(frame)-wire.FeedLenSize {
		return fmt.Errorf("feed: Publisher.Commit: malformed frame of %d bytes", len(frame))
	}
	if seq := binary.LittleEndian.Uint64(frame[wire.FeedLenSize:]); seq != p.next {
		return fmt.Errorf("feed: Publisher.Commit: seq %d, want %d (the stream must be contiguous)", seq, p.next)
	}
	p.s.hist.commit(len(frame))
	p.next++
	p.idx++
	p.pending = true
	return nil
}

// Epoch is the epoch the next Commit goes into.
func (p *Publisher) Epoch() uint32 { return p.s.book.current() }

// Reset starts epoch, numbered from next: a Sequence Reset in the stream
// (or, before the first Commit, the epoch the stream starts in). Epochs
// must grow.
func (p *Publisher) Reset(epoch uint32, next uint64) error {
	cur := p.s.book.current()
	switch {
	case next == 0 || next > wire.MaxSeq:
		return fmt.Errorf("feed: Publisher.Reset: seq %d outside 1..%d", next, uint64(wire.MaxSeq))
	case p.idx == p.s.book.first()-1: // nothing committed: the stream starts there
		p.s.book.restart(epoch, p.idx+1, next)
		p.s.hist.start(p.idx + 1) // no-op for index 1: empty history
		p.next = next
		return nil
	case epoch <= cur:
		return fmt.Errorf("feed: Publisher.Reset: epoch %d after %d: epochs must grow", epoch, cur)
	}
	p.idx++
	p.s.commitReset(p.idx, epoch, next, p.s.now())
	p.next, p.pending = next, true
	return nil
}

// Publish makes every committed frame visible and wakes the sessions.
func (p *Publisher) Publish() {
	if !p.pending {
		return
	}
	p.pending = false
	p.s.hist.publish(p.idx)
	ch := make(chan struct{})
	close(*p.s.notify.Swap(&ch))
}

// start lets generation run (closing Publisher.Started); idempotent.
func (s *Server) start() {
	s.startMu.Do(func() {
		s.started.Store(true)
		close(s.startCh)
	})
}
