package root

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"time"

	"tickrelay/latency"
	"tickrelay/wire"
)

// errSession marks an ended exchange session; the wrapped detail says why.
var (
	errGap     = errors.New("sequence gap")
	errDial    = errors.New("cannot reach the exchange")
	errBadFeed = errors.New("bad input from exchange")
	errIdle    = errors.New("exchange idle")
	errLogon   = errors.New("logon rejected")
)

// feedBufSize is the session's read buffer: many frames per read.
const feedBufSize = 256 << 10

// session is the exchange side of the root: it owns the read buffer and the
// last accepted seq, and runs on one goroutine (the only ring writer).
type session struct {
	r    *Root
	in   *wire.FeedReader
	last uint64 // highest seq accepted (ring head)
	// pending counts items accepted since the last flush.
	pending int
	logon   []byte
	sent    []int64 // exchange send times of the items of one apply
	// storeNext is the first seq the store failed to take (0: none): later
	// items go to the store only after the ring's copies of the missed ones.
	storeNext uint64
	storeItem []byte // scratch: a ring item being re-appended to the store
	// backFrom is the first seq of a run of items the exchange resent
	// (seq <= last), 0 when it is not going over held seqs.
	backFrom uint64
}

func newSession(r *Root) *session {
	return &session{r: r, in: wire.NewFeedReader(feedBufSize), last: r.ring.Head()}
}

// run keeps a session to the exchange until ctx ends, reconnecting with
// exponential backoff and jitter, always resuming from last+1.
func (s *session) run(ctx context.Context) {
	cfg := &s.r.cfg
	backoff := cfg.MinBackoff
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			s.r.m.Reconnects.Inc()
			d := backoff/2 + rand.N(backoff/2+1)
			s.r.progress.Store(time.Now().Add(d).UnixNano()) // waiting is not stalling
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		started := time.Now()
		s.r.progress.Store(started.UnixNano())
		accepted, err := s.once(ctx)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errDial) { // no session began
			s.r.log.Warn("exchange dial failed; retrying", "addr", cfg.ExchangeAddr, "err", err, "epoch", wire.PosEpoch(s.last), "last_seq", wire.PosSeq(s.last))
		} else {
			s.r.log.Warn("exchange session ended", "err", err, "epoch", wire.PosEpoch(s.last), "last_seq", wire.PosSeq(s.last), "accepted", accepted, "up", time.Since(started).Round(time.Millisecond))
		}
		if accepted > 0 || time.Since(started) >= cfg.MaxBackoff {
			backoff = cfg.MinBackoff
		} else if backoff *= 2; backoff > cfg.MaxBackoff {
			backoff = cfg.MaxBackoff
		}
	}
}

// once runs one session: dial, logon from last+1, read until an error.
func (s *session) once(ctx context.Context) (accepted uint64, err error) {
	cfg := &s.r.cfg
	d := net.Dialer{Timeout: cfg.DialTimeout}
	conn, err := d.DialContext(ctx, "tcp", cfg.ExchangeAddr)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", errDial, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	s.in.Reset()

	start := s.last + 1 // a position: the epoch asked for and its seq
	s.logon = wire.AppendLogon(s.logon[:0], wire.Logon{User: cfg.User, Password: cfg.Password, StartSeq: wire.PosSeq(start), Epoch: wire.PosEpoch(start)})
	conn.SetDeadline(time.Now().Add(cfg.DialTimeout))
	if _, err := conn.Write(s.logon); err != nil {
		return 0, fmt.Errorf("logon: %w", err)
	}
	reply, err := s.readLogonReply(conn)
	if err != nil {
		return 0, err
	}
	conn.SetWriteDeadline(time.Time{})
	if served := reply.Status == wire.LogonOK || reply.Status == wire.LogonUnavailable; served && reply.Epoch != wire.PosEpoch(start) {
		if reply.Epoch < wire.PosEpoch(start) {
			return 0, s.bad("epoch", fmt.Errorf("exchange serves epoch %d, older than ours (%d, at seq %d)", reply.Epoch, wire.PosEpoch(start), wire.PosSeq(s.last)))
		}
		s.newEpoch(reply.Epoch, 1, "logon")
		start = s.last + 1
	}
	// Nothing received in this epoch (an empty store too: refill ran), even
	// after a LogonUnavailable reply moved last to the then oldest seq.
	fresh := s.r.ring.EpochEmpty()
	asked, next := wire.PosSeq(start), wire.Pos(wire.PosEpoch(start), reply.NextSeq)
	switch {
	case reply.NextSeq > wire.MaxSeq:
		return 0, s.bad("session", fmt.Errorf("logon reply next seq %d is beyond an epoch's %d", reply.NextSeq, uint64(wire.MaxSeq)))
	case reply.Status == wire.LogonUnavailable && fresh && next > start:
		// A fresh root takes the stream from the oldest seq the exchange serves.
		s.skipTo(next)
		return 0, fmt.Errorf("%w: seq %d unavailable, retrying from the oldest served %d", errLogon, asked, reply.NextSeq)
	case reply.Status != wire.LogonOK:
		return 0, fmt.Errorf("%w: status %d (next seq %d): %q", errLogon, reply.Status, reply.NextSeq, reply.Reason)
	case next > start && fresh:
		// A fresh root takes the stream from wherever the exchange starts it.
		s.r.log.Info("exchange starts the stream later than asked", "epoch", reply.Epoch, "asked", asked, "next_seq", reply.NextSeq)
		s.skipTo(next)
	case next != start:
		return 0, fmt.Errorf("%w: asked to resume at %d, exchange offers %d", errGap, asked, reply.NextSeq)
	}
	s.r.log.Info("exchange session up", "addr", cfg.ExchangeAddr, "epoch", wire.PosEpoch(start), "start_seq", wire.PosSeq(s.last+1))
	s.r.m.SessionUp.Set(1)
	defer s.r.m.SessionUp.Set(0)
	before := s.last
	s.backFrom = 0
	err = s.readLoop(conn)
	return wire.PosItems(before, s.last), err
}

// readLogonReply reads the exchange's answer to the logon.
func (s *session) readLogonReply(conn net.Conn) (wire.LogonReply, error) {
	reply, err := s.in.ReadLogonReply(conn)
	var werr *wire.Error
	switch {
	case errors.Is(err, wire.ErrNotLogonReply):
		return reply, s.bad("session", err)
	case errors.As(err, &werr):
		return reply, s.bad(kindOf(err), err)
	}
	return reply, err
}

// readLoop reads and applies frames until the session must end.
func (s *session) readLoop(conn net.Conn) error {
	idle := s.r.cfg.IdleTimeout
	for {
		if err := s.apply(); err != nil {
			s.flush()
			return err
		}
		s.flush()
		s.r.progress.Store(time.Now().UnixNano())
		conn.SetReadDeadline(time.Now().Add(idle))
		if err := s.in.Fill(conn); err != nil {
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded):
				return fmt.Errorf("%w: nothing for %v", errIdle, idle)
			case errors.Is(err, io.EOF) && s.in.Buffered() > 0:
				return s.bad("closed_mid_frame", fmt.Errorf("connection closed with %d bytes of a partial frame", s.in.Buffered()))
			}
			return err
		}
	}
}

// apply consumes every complete frame in the buffer, stamping accepted items
// with one receive time (the bytes arrived together).
func (s *session) apply() error {
	recv := s.r.now()
	defer s.recordExchRoot(recv)
	for {
		_, body, h, err := s.in.Next()
		if err != nil {
			if errors.Is(err, wire.ErrShort) {
				return nil
			}
			return s.bad(kindOf(err), err)
		}
		if err := s.item(body, h, recv); err != nil {
			return err
		}
	}
}

// recordExchRoot adds the exch->root latency of the items one apply
// accepted (received at recv) under one lock.
func (s *session) recordExchRoot(recv int64) {
	if len(s.sent) == 0 {
		return
	}
	s.r.hops.With(0, func(h *latency.Hops) {
		for _, t := range s.sent {
			h.RecordHop(latency.HopExchRoot, recv-t)
		}
	})
	s.sent = s.sent[:0]
}

// item applies one structurally valid frame body, whose headers are h.
func (s *session) item(body []byte, h wire.FeedHeader, recv int64) error {
	if h.Seq == 0 {
		switch h.MsgType {
		case wire.TypeSequenceReset:
			return s.reset(wire.ParseSequenceReset(body))
		case wire.TypeHeartbeat:
		default:
			return s.bad("session", fmt.Errorf("unexpected session message type %d", h.MsgType))
		}
		if next := wire.HeartbeatNextSeq(body); next > wire.PosSeq(s.last)+1 {
			s.r.m.Gaps.Inc()
			return fmt.Errorf("%w: heartbeat announces next seq %d, last received %d", errGap, next, wire.PosSeq(s.last))
		}
		if st := s.r.cfg.Store; st != nil && s.storeNext != 0 {
			s.catchUpStore(st, s.last+1) // a quiet feed: the store catches up all the same
		}
		return nil
	}
	if h.Seq > wire.MaxSeq {
		return s.bad("stamps", fmt.Errorf("seq %d is beyond an epoch's %d", h.Seq, uint64(wire.MaxSeq)))
	}
	seq := wire.Pos(wire.PosEpoch(s.last), h.Seq) // its position
	switch {
	case seq <= s.last:
		// The exchange went back (it resends what it sent): ignore what is
		// held, and say so once per run of such items, not per item.
		s.r.m.Duplicates.Inc()
		if s.backFrom == 0 {
			s.backFrom = h.Seq
			s.r.m.SeqBackwards.Inc()
			s.r.log.Warn("exchange seq went backwards: ignoring items already held", "epoch", wire.PosEpoch(s.last), "seq", h.Seq, "last_seq", wire.PosSeq(s.last))
		}
		return nil
	case s.backFrom != 0:
		s.r.log.Info("exchange seq moved past what is held again", "resent_from", s.backFrom, "next_seq", h.Seq)
		s.backFrom = 0
	}
	if seq != s.last+1 {
		s.r.m.Gaps.Inc()
		return fmt.Errorf("%w: got seq %d, want %d", errGap, h.Seq, wire.PosSeq(s.last)+1)
	}
	if st := s.r.cfg.Store; st != nil {
		s.appendStore(st, seq, recv, body)
	}
	if err := s.r.ring.Append(seq, recv, body); err != nil {
		return err // cannot happen: seq is last+1 and the body was validated
	}
	s.r.relay.matchAlerts(seq, body, h.SendTime)
	s.last = seq
	s.pending++
	s.sent = append(s.sent, h.SendTime)
	return nil
}

// appendStore appends item seq to the store. The feed goes on when the
// store fails (the relay must not wait for a full disk), and the store gets
// what it missed from the ring once it takes items again, storeCatchUp
// items per item arriving (a backlog of up to the ring's size must not stall
// the feed in one go): an item is durable late rather than never. Should the
// ring lap the store first, the store stays behind (logged each second)
// until a restart refills the ring from the store and asks the exchange for
// the rest.
func (s *session) appendStore(st Store, seq uint64, recv int64, body []byte) {
	if s.storeNext != 0 && !s.catchUpStore(st, seq) {
		return // seq waits in the ring for its turn
	}
	if err := st.Append(seq, recv, body); err != nil {
		s.storeNext = seq
		s.r.storeFailed(seq, err)
	}
}

// storeCatchUp is how many missed items appendStore re-appends per call.
const storeCatchUp = 256

// catchUpStore re-appends from the ring up to storeCatchUp of the items the
// store missed before seq; it reports whether the store has all of them.
func (s *session) catchUpStore(st Store, seq uint64) bool {
	for n := 0; s.storeNext < seq; s.storeNext++ {
		if n++; n > storeCatchUp {
			return false
		}
		var ok bool
		if s.storeItem, ok = s.r.ring.Get(s.storeItem[:0], s.storeNext); !ok {
			s.r.storeFailed(s.storeNext, fmt.Errorf("the ring no longer holds seq %d (lapped while the store failed): the store stays behind until a restart", s.storeNext))
			return false
		}
		if err := st.Append(s.storeNext, int64(binary.LittleEndian.Uint64(s.storeItem)), s.storeItem[wire.RelayItemHeader:]); err != nil {
			s.r.storeFailed(s.storeNext, err)
			return false
		}
	}
	s.storeNext = 0
	return true
}

// flush publishes what apply accepted: metrics and one coalesced signal to
// every relay loop.
func (s *session) flush() {
	if s.pending == 0 {
		return
	}
	s.r.m.ItemsReceived.Add(float64(s.pending))
	s.pending = 0
	s.r.showRing(s.r.ring.Bounds())
	s.r.relay.signalFed()
}

// reset follows a Sequence Reset: a later epoch starts at once; one that
// is not later, or a seq out of an epoch's range, is bad input (the
// session ends; what was received stays).
func (s *session) reset(r wire.SequenceReset) error {
	if err := r.Follows(wire.PosEpoch(s.last), wire.PosSeq(s.last)); err != nil {
		return s.bad("reset", err)
	}
	s.newEpoch(r.Epoch, r.NextSeq, "sequence reset")
	return nil
}

// newEpoch closes the session's epoch and starts epoch at seq next in the
// ring (which keeps the last one's items until it laps them, as the store
// keeps every epoch); the relay tells each child once it has the last
// epoch's items.
func (s *session) newEpoch(epoch uint32, next uint64, why string) {
	prev := s.last
	s.flush()
	if st := s.r.cfg.Store; st != nil && s.storeNext != 0 {
		for before := uint64(0); s.storeNext != before; { // until done or stuck
			if before = s.storeNext; s.catchUpStore(st, prev+1) {
				break
			}
		}
		if s.storeNext != 0 { // its copies in the ring go with the reset
			s.r.log.Error("the store misses the end of an epoch: it failed, and the ring starts over", "epoch", wire.PosEpoch(prev), "from_seq", wire.PosSeq(s.storeNext), "to_seq", wire.PosSeq(prev))
			s.storeNext = 0
		}
	}
	s.r.endEpoch(prev)
	s.r.m.EpochChanges.Inc()
	s.r.log.Info("exchange started a new epoch", "epoch", epoch, "next_seq", next, "via", why,
		"prev_epoch", wire.PosEpoch(prev), "prev_last_seq", wire.PosSeq(prev))
	s.backFrom = 0
	s.last = wire.Pos(epoch, next-1)
	s.r.ring.Begin(s.last + 1) // the last epoch's items stay for the children still sending them
	s.r.showRing(s.r.ring.Bounds())
	s.r.relay.signalFed()
}

// skipTo makes pos the next position expected; the ring starts there.
func (s *session) skipTo(pos uint64) {
	s.last = pos - 1
	s.r.ring.Reset(pos)
	s.r.showRing(s.r.ring.Bounds())
}

// bad records malformed exchange input of a kind and returns the session error.
func (s *session) bad(kind string, err error) error {
	s.r.m.BadInput.WithLabelValues(kind).Inc()
	s.r.log.Error("bad input from exchange; dropping session", "kind", kind, "err", err, "epoch", wire.PosEpoch(s.last), "last_seq", wire.PosSeq(s.last))
	return fmt.Errorf("%w: %v", errBadFeed, err)
}

// kindOf names a wire decode error for the bad-input metric.
func kindOf(err error) string {
	switch {
	case errors.Is(err, wire.ErrEmpty):
		return "empty"
	case errors.Is(err, wire.ErrTooLarge):
		return "too_large"
	case errors.Is(err, wire.ErrTruncated):
		return "truncated"
	case errors.Is(err, wire.ErrUnknownType):
		return "unknown_type"
	case errors.Is(err, wire.ErrStamps):
		return "stamps"
	}
	return "other"
}
