package feed

import (
	"context"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"tickrelay/internal/bound"
	"tickrelay/wire"
)

// Config configures the exchange simulator.
type Config struct {
	Addr           string // listen address, e.g. "127.0.0.1:9000" ("127.0.0.1:0" in tests)
	User, Password string // the one accepted logon (at most 16 bytes each)

	Rate    int   // messages per second; 0 generates as fast as possible
	Symbols int   // securities, codes 1..Symbols
	Seed    int64 // the stream is identical for a seed
	// ZipfV flattens the symbols' popularity (GenConfig.ZipfV; 0: the
	// default skew, a few symbols carry much of the traffic).
	ZipfV float64
	// Bursts: every BurstEvery, for BurstFor, the rate is multiplied by
	// BurstFactor (opening auction, news). BurstFactor <= 1 disables them.
	BurstFactor float64
	BurstEvery  time.Duration
	BurstFor    time.Duration
	// MaxSeq stops generating after this seq (0: endless); sessions stay
	// up, heartbeating, and can still retransmit. It is also the planned
	// stream length: the last Symbols messages are closing prices.
	MaxSeq uint64
	// Retain is how many of the latest messages are kept for
	// retransmission (0: all). Memory is about 50 B per message.
	Retain uint64
	// StartOnLogon holds the generator until the first successful logon
	// (so a measurement knows what was published after it started).
	StartOnLogon bool
	// Source, when set, replaces the generator (Rate, Seed, Bursts and
	// MaxSeq are then unused): see Source. FirstSeq is the seq of its first
	// frame (0 means 1): before it is published a logon from 0 starts
	// there, and one asking for less is told FirstSeq is the oldest held.
	Source   Source
	FirstSeq uint64

	// Epoch is the session the stream starts in (0: the start time in
	// Unix seconds, so that each start is a new trading day). Pin it for a
	// restarted simulator to continue the same one. ResetEvery starts a
	// new epoch (a Sequence Reset, seqs from 1) after every ResetEvery
	// items of one; ResetAt once, after item ResetAt of the first epoch
	// (0: never). The generator only.
	Epoch      uint32
	ResetEvery uint64
	ResetAt    uint64

	Heartbeat    time.Duration // idle time before a heartbeat
	LoginTimeout time.Duration // a connection must log on within this
	WriteTimeout time.Duration // a session whose write blocks this long is closed

	Now        func() int64 // clock for send times, ns since the epoch (time.Now)
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// DefaultConfig is the `tickrelay exchange` default.
func DefaultConfig() Config {
	return Config{
		Addr:         "127.0.0.1:9000",
		User:         "tickrelay",
		Password:     "tickrelay",
		Rate:         100_000,
		Symbols:      2000,
		Seed:         1,
		BurstFactor:  1,
		BurstEvery:   time.Minute,
		BurstFor:     5 * time.Second,
		Retain:       10_000_000,
		Heartbeat:    time.Second,
		LoginTimeout: 5 * time.Second,
		WriteTimeout: 10 * time.Second,
	}
}

// Validate checks the config and names the first bad field.
func (c Config) Validate() error {
	switch {
	case c.Addr == "":
		return errors.New("feed: Addr: required")
	case c.User == "" || len(c.User) > 16:
		return fmt.Errorf("feed: User %q: want 1..16 bytes", c.User)
	case len(c.Password) > 16:
		return errors.New("feed: Password: at most 16 bytes")
	case c.Rate < 0:
		return fmt.Errorf("feed: Rate %d: must be >= 0 (0 = as fast as possible)", c.Rate)
	case c.Symbols < 1 || c.Symbols > 1<<20:
		return fmt.Errorf("feed: Symbols %d: want 1..%d", c.Symbols, 1<<20)
	case c.BurstFactor > 1 && (c.BurstEvery <= 0 || c.BurstFor <= 0 || c.BurstFor > c.BurstEvery):
		return fmt.Errorf("feed: BurstEvery %v, BurstFor %v: want 0 < BurstFor <= BurstEvery when BurstFactor > 1",
			c.BurstEvery, c.BurstFor)
	case c.ZipfV != 0 && c.ZipfV < 1:
		return fmt.Errorf("feed: ZipfV %v: want >= 1 (or 0 for the default)", c.ZipfV)
	case c.BurstFactor > 1000:
		return fmt.Errorf("feed: BurstFactor %v: at most 1000", c.BurstFactor)
	case c.Retain != 0 && c.Retain < segMsgs:
		return fmt.Errorf("feed: Retain %d: want 0 (all) or >= %d", c.Retain, segMsgs)
	case c.Source != nil && (c.ResetEvery != 0 || c.ResetAt != 0):
		return errors.New("feed: ResetEvery, ResetAt: the generator's only (no Source)")
	case c.ResetEvery > wire.MaxSeq || c.ResetAt > wire.MaxSeq || c.FirstSeq > wire.MaxSeq:
		return fmt.Errorf("feed: ResetEvery %d, ResetAt %d, FirstSeq %d: at most %d (an epoch's seqs)", c.ResetEvery, c.ResetAt, c.FirstSeq, uint64(wire.MaxSeq))
	case c.Heartbeat <= 0:
		return fmt.Errorf("feed: Heartbeat %v: must be > 0", c.Heartbeat)
	case c.LoginTimeout <= 0:
		return fmt.Errorf("feed: LoginTimeout %v: must be > 0", c.LoginTimeout)
	case c.WriteTimeout <= 0:
		return fmt.Errorf("feed: WriteTimeout %v: must be > 0", c.WriteTimeout)
	}
	return nil
}

// writeChunk bounds one session write.
const writeChunk = 256 << 10

// Server is the exchange simulator. Create it with New and start it with Run.
type Server struct {
	cfg             Config
	log             *slog.Logger
	now             func() int64
	hist            *history
	book            epochBook
	met             *metrics
	*bound.Listener // Ready is closed once the server listens; Addr is its address
	ran             atomic.Bool

	notify  atomic.Pointer[chan struct{}] // closed and replaced on each publish
	paused  atomic.Bool
	genMu   sync.Mutex    // held by the generator while it makes a batch (Pause waits on it)
	started atomic.Bool   // generation may run (StartOnLogon gate)
	startCh chan struct{} // closed when started becomes true
	startMu sync.Once

	mu    sync.Mutex // guards conns
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// New validates cfg and returns a server; it binds nothing yet.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger,
		now:      cfg.Now,
		hist:     newHistory(cfg.Retain),
		Listener: bound.New(),
		conns:    map[net.Conn]struct{}{},
		startCh:  make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("component", "exchange")
	if s.now == nil {
		s.now = func() int64 { return time.Now().UnixNano() }
	}
	ch := make(chan struct{})
	s.notify.Store(&ch)
	if cfg.Source != nil && cfg.FirstSeq > 1 {
		s.hist.start(cfg.FirstSeq)
	}
	epoch := cfg.Epoch
	if epoch == 0 {
		epoch = uint32(time.Now().Unix())
	}
	first := max(cfg.FirstSeq, 1)
	s.book.begin(epoch, first, first)
	if !cfg.StartOnLogon {
		s.start()
	}
	return s, nil
}

// BodyOf returns the body of item seq of epoch, or false if not held.
func (s *Server) BodyOf(epoch uint32, seq uint64) ([]byte, bool) {
	i, at, ok := s.book.locate(epoch, seq)
	if !ok || at.epoch != epoch {
		return nil, false
	}
	b, ok := s.hist.body(i)
	if !ok || len(b) < wire.MinFeedBody || binary.LittleEndian.Uint64(b) != seq { // one past its end: the reset
		return nil, false
	}
	return b, true
}

// Epoch is the epoch the simulator is in.
func (s *Server) Epoch() uint32 { return s.book.current() }

// Published is the highest seq generated so far (with resets: the
// history's index, which counts their frames too).
func (s *Server) Published() uint64 { return s.hist.head.Load() }

// Oldest is the lowest seq still held for retransmission.
func (s *Server) Oldest() uint64 { return s.hist.oldestSeq() }

// Body returns the feed body (frame without its length prefix) sent for
// seq, or false if seq is not (or no longer) held. The bytes are shared:
// do not modify them.
func (s *Server) Body(seq uint64) ([]byte, bool) { return s.hist.body(seq) }

// Pause stops generation until Resume; sessions keep streaming what exists
// and heartbeat when they reach the head. It returns once any batch in
// progress is published: Published is then stable until Resume.
func (s *Server) Pause() {
	s.paused.Store(true)
	s.genMu.Lock()
	s.genMu.Unlock() //lint:ignore SA2001 waits for the batch in progress
}

// Resume restarts generation after Pause, at the configured rate (the time
// paused is not made up).
func (s *Server) Resume() { s.paused.Store(false) }

// Sessions is the number of open connections (logged on or logging on).
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// DropConnections closes every connection; clients may log on again.
func (s *Server) DropConnections() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.Close()
	}
}

// Run listens, generates and serves until ctx ends, then closes every
// session and returns once all its goroutines have finished.
func (s *Server) Run(ctx context.Context) error {
	if !s.ran.CompareAndSwap(false, true) {
		return errors.New("feed: Run called twice")
	}
	met, err := newMetrics(s.cfg.Registerer, s)
	if err != nil {
		return fmt.Errorf("feed: metrics: %w", err)
	}
	s.met = met
	defer met.unregister()
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("feed: listen: %w", err)
	}
	s.Publish(ln.Addr())
	s.log.Info("exchange listening", "addr", s.Addr().String(), "epoch", s.Epoch(), "rate", s.cfg.Rate, "symbols", s.cfg.Symbols,
		"seed", s.cfg.Seed, "max_seq", s.cfg.MaxSeq)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		if s.cfg.Source == nil {
			s.generate(ctx)
			return
		}
		p := &Publisher{s: s, next: max(s.cfg.FirstSeq, 1), idx: max(s.cfg.FirstSeq, 1) - 1}
		p.Buffer() // allocate the first segment now, not in the first frame's time
		if err := s.cfg.Source(ctx, p); err != nil && ctx.Err() == nil {
			s.log.Error("exchange source failed; sessions stay up", "err", err, "published", s.Published())
		}
	}()
	go func() { defer s.wg.Done(); <-ctx.Done(); ln.Close() }()

	var runErr error
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() == nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					continue
				}
				runErr = fmt.Errorf("feed: accept: %w", err)
			}
			break
		}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.serve(ctx, c) }()
	}
	cancel()
	s.DropConnections()
	s.wg.Wait()
	s.log.Info("exchange stopped", "published", s.Published())
	return runErr
}

// GenTick is the simulator's generation tick: each tick makes the messages
// due since the previous one, stamped with the tick's time.
const GenTick = time.Millisecond

// LateStamp is the send stamp of a message due at due and sent at now: now,
// or due+GenTick when it goes out later than that. A source held behind its
// schedule (a late tick here, TCP backpressure for perf's peer publisher)
// so counts its own lateness as latency instead of hiding it (coordinated
// omission).
func LateStamp(now, due int64) int64 { return min(now, due+int64(GenTick)) }

// generate appends messages to the history at the configured pace.
func (s *Server) generate(ctx context.Context) {
	g := NewGenerator(GenConfig{Seed: s.cfg.Seed, Symbols: s.cfg.Symbols, Total: s.cfg.MaxSeq, ZipfV: s.cfg.ZipfV})
	var m wire.Msg
	tick := time.NewTicker(GenTick)
	defer tick.Stop()
	var (
		start, last time.Time // of generation (after the StartOnLogon gate), of the previous tick
		began       bool
		credit      float64
		rate        float64 // of this tick; 0: as fast as possible
		idx, seq    uint64  // history index and epoch seq of the last frame
		epoch       = s.book.current()
		resetAt     = s.cfg.ResetAt
	)
	for {
		s.genMu.Lock()
		now := time.Now()
		n := 4096
		if !began && s.started.Load() {
			start, last, began = now, now, true
		}
		if s.paused.Load() || !began {
			n = 0
		} else if s.cfg.Rate > 0 {
			rate = float64(s.cfg.Rate)
			if s.cfg.BurstFactor > 1 && now.Sub(start)%s.cfg.BurstEvery < s.cfg.BurstFor {
				rate *= s.cfg.BurstFactor
			}
			// Make up for a late tick, but never more than 100 ms worth.
			credit = min(credit+rate*now.Sub(last).Seconds(), rate/10)
			n = int(credit)
			credit -= float64(n)
		}
		last = now
		if lim := s.cfg.MaxSeq; lim > 0 && g.Seq()+uint64(n) > lim {
			n = int(lim - g.Seq())
		}
		if n > 0 {
			sendTime := s.now()
			var interval float64 // ns between messages; 0: no schedule
			if rate > 0 {
				interval = float64(time.Second) / rate
			}
			for i := range n {
				// A late tick catches up: message i was due (n-1-i) intervals ago.
				stamp := LateStamp(sendTime, sendTime-int64(float64(n-1-i)*interval))
				if seq == resetAt && seq > 0 || s.cfg.ResetEvery > 0 && seq == s.cfg.ResetEvery {
					idx, seq, epoch, resetAt = idx+1, 0, epoch+1, 0
					s.commitReset(idx, epoch, 1, stamp)
					s.log.Info("exchange sequence reset: a new epoch", "epoch", epoch, "index", idx)
				}
				g.Next(&m)
				idx, seq = idx+1, seq+1
				out, _ := wire.AppendMsgFrame(s.hist.reserve(idx), seq, stamp, &m)
				s.hist.commit(len(out))
			}
			s.hist.publish(idx)
			ch := make(chan struct{})
			close(*s.notify.Swap(&ch))
			if g.Seq() == s.cfg.MaxSeq {
				s.log.Info("exchange reached max seq; generation stopped", "max_seq", s.cfg.MaxSeq)
			}
		}
		s.genMu.Unlock()
		if s.cfg.MaxSeq > 0 && g.Seq() >= s.cfg.MaxSeq {
			<-ctx.Done()
			return
		}
		if s.cfg.Rate == 0 && n > 0 {
			if ctx.Err() != nil {
				return
			}
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// serve runs one connection: logon, then stream from its start seq.
func (s *Server) serve(ctx context.Context, c net.Conn) {
	defer func() {
		c.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	log := s.log.With("remote", c.RemoteAddr().String())
	next, ok := s.logon(c, log)
	if !ok {
		// Half-close and drain briefly so the refusal reaches the client
		// instead of being lost to a reset over unread input.
		if tc, isTCP := c.(*net.TCPConn); isTCP {
			tc.CloseWrite()
			tc.SetReadDeadline(time.Now().Add(time.Second))
			io.Copy(io.Discard, io.LimitReader(tc, 64<<10))
		}
		return
	}
	if !s.started.Load() {
		s.start()
	}
	s.met.sessions.Inc()
	defer s.met.sessions.Dec()

	// The client sends nothing after its logon; reading detects its close.
	gone := make(chan struct{})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		io.Copy(io.Discard, c)
		close(gone)
	}()
	err := s.stream(ctx, c, next, gone)
	switch {
	case err == nil || ctx.Err() != nil:
		log.Info("exchange session closed")
	case errors.Is(err, net.ErrClosed):
		log.Info("exchange session closed", "reason", "dropped")
	default:
		log.Warn("exchange session closed", "err", err)
	}
}

// logon reads and answers the first frame; ok means stream from next.
func (s *Server) logon(c net.Conn, log *slog.Logger) (next uint64, ok bool) {
	reply := func(status uint16, nextSeq uint64, epoch uint32, reason string) {
		c.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
		c.Write(wire.AppendLogonReply(nil, wire.LogonReply{Status: status, NextSeq: nextSeq, Epoch: epoch, Reason: reason}))
		s.met.logons.WithLabelValues(statusName(status)).Inc()
		if status != wire.LogonOK {
			log.Warn("exchange logon refused", "status", statusName(status), "reason", reason)
		}
	}
	c.SetReadDeadline(time.Now().Add(s.cfg.LoginTimeout))
	body, err := wire.NewFeedReader(0).ReadFrame(c)
	var werr *wire.Error
	var ne net.Error
	switch {
	case errors.As(err, &werr):
		reply(wire.LogonMalformed, 0, 0, "bad logon frame: "+err.Error())
		return 0, false
	case errors.As(err, &ne) && ne.Timeout():
		log.Warn("exchange logon timeout", "after", s.cfg.LoginTimeout)
		s.met.logons.WithLabelValues("timeout").Inc()
		return 0, false
	case err != nil:
		return 0, false
	}
	c.SetReadDeadline(time.Time{})
	lg, err := wire.ParseLogon(body)
	if err != nil {
		reply(wire.LogonMalformed, 0, 0, "first frame must be a logon: "+err.Error())
		return 0, false
	}
	userOK := subtle.ConstantTimeCompare([]byte(lg.User), []byte(s.cfg.User)) == 1
	passOK := subtle.ConstantTimeCompare([]byte(lg.Password), []byte(s.cfg.Password)) == 1
	if !userOK || !passOK {
		reply(wire.LogonBadAuth, 0, 0, fmt.Sprintf("bad user or password for user %q", lg.User))
		return 0, false
	}
	// next is a history index; (epoch, seq) what it carries.
	head := s.hist.head.Load()
	var at epochStart
	if lg.StartSeq == 0 { // the live edge
		next = head + 1
		at.epoch, at.seq = s.book.at(next)
	} else if next, at, ok = s.book.locate(lg.Epoch, lg.StartSeq); !ok {
		if at.epoch < lg.Epoch {
			reply(wire.LogonUnavailable, at.seq, at.epoch, fmt.Sprintf("epoch %d is not served: the latest is %d", lg.Epoch, at.epoch))
		} else {
			reply(wire.LogonUnavailable, at.seq, at.epoch, fmt.Sprintf("start seq %d is not in epoch %d (from %d)", lg.StartSeq, lg.Epoch, at.seq))
		}
		return 0, false
	}
	if next > head+1 {
		e, hs := s.book.at(head + 1)
		reply(wire.LogonUnavailable, hs, e, fmt.Sprintf("start seq %d is beyond the head: next seq is %d", at.seq, hs))
		return 0, false
	}
	if oldest := s.hist.oldestSeq(); next < oldest {
		e, os := s.book.at(oldest)
		reply(wire.LogonUnavailable, os, e, fmt.Sprintf("start seq %d is no longer held: oldest is %d", at.seq, os))
		return 0, false
	}
	reply(wire.LogonOK, at.seq, at.epoch, "")
	log.Info("exchange logon", "user", lg.User, "epoch", lg.Epoch, "start_seq", lg.StartSeq, "serves_epoch", at.epoch, "next_seq", at.seq, "head", head)
	return next, true
}

func statusName(st uint16) string {
	switch st {
	case wire.LogonOK:
		return "ok"
	case wire.LogonBadAuth:
		return "bad_auth"
	case wire.LogonUnavailable:
		return "unavailable"
	case wire.LogonMalformed:
		return "malformed"
	}
	return "other"
}

// stream writes the history from next on, then live frames as they are
// published, and heartbeats when idle. It returns on a write error, when
// the client goes, or when ctx ends.
func (s *Server) stream(ctx context.Context, c net.Conn, next uint64, gone <-chan struct{}) error {
	hb := time.NewTimer(s.cfg.Heartbeat)
	defer hb.Stop()
	var (
		seg  *segment
		hbuf = make([]byte, 0, 64)
	)
	for {
		ch := *s.notify.Load()
		head := s.hist.head.Load()
		if next <= head {
			if seg == nil || !seg.contains(next) {
				if seg = s.hist.find(next); seg == nil {
					return fmt.Errorf("session fell behind retention: seq %d no longer held (oldest %d)", next, s.hist.oldestSeq())
				}
			}
			data, after := seg.frames(next, head, writeChunk)
			c.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
			if _, err := c.Write(data); err != nil {
				return err
			}
			s.met.bytes.Add(float64(len(data)))
			s.met.frames.Add(float64(after - next))
			next = after
			hb.Reset(s.cfg.Heartbeat)
			continue
		}
		select {
		case <-ch:
		case <-hb.C:
			_, seq := s.book.at(next)
			hbuf = wire.AppendHeartbeat(hbuf[:0], seq, s.now())
			c.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
			if _, err := c.Write(hbuf); err != nil {
				return err
			}
			s.met.bytes.Add(float64(len(hbuf)))
			s.met.heartbeats.Inc()
			hb.Reset(s.cfg.Heartbeat)
		case <-gone:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}
