package replay

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/prometheus/client_golang/prometheus"

	"tickrelay/feed"
	"tickrelay/wire"
)

// Config configures a replay Server, an exchange that plays a recording.
type Config struct {
	Addr           string // feed listen address ("127.0.0.1:0" in tests)
	User, Password string // the one accepted logon

	// Speed scales the recorded pacing: 1 plays at the original
	// inter-arrival times, 10 ten times faster. Ignored with Max.
	Speed float64
	Max   bool // publish as fast as possible
	// Loop plays the selection again and again. Pass k (from 0) carries
	// seq + k*span, span = last-first+1 of the selection: the stream stays
	// one contiguous, ever-increasing sequence, so a root never sees a
	// rewind. Frame headers are rewritten accordingly.
	Loop bool
	// Restamp rewrites each frame's send time to the moment it is
	// published (the relay's latency stamps then make sense); off, bodies
	// are sent verbatim.
	Restamp bool
	// StartOnLogon holds playback until the first successful logon, so the
	// first consumer sees the recorded pacing from its start.
	StartOnLogon bool
	// Spin is how long before a frame's time the player stops sleeping on
	// a timer (which wakes up to ~1 ms late) and yields in a loop instead:
	// tighter pacing for a core's worth of CPU. 0 uses timers alone.
	Spin time.Duration
	// Retain is how many of the latest frames are kept for retransmission
	// (0: all). Memory is about 64 B per frame.
	Retain uint64
	// Epochs: a source's own epoch changes are played as Sequence Resets
	// (its first epoch is the stream's). ResetEvery starts a new epoch
	// (the last one + 1, seqs from 1, frame headers rewritten) after every
	// ResetEvery records of one; ResetAt once, after the record with seq
	// ResetAt. Neither goes with Loop.
	ResetEvery, ResetAt uint64

	Heartbeat, LoginTimeout, WriteTimeout time.Duration

	Source Source // what to play (required)

	Now        func() int64 // wall clock for Restamp and heartbeats (time.Now)
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// DefaultConfig is the `tickrelay replay serve` default; Source must be set.
func DefaultConfig() Config {
	f := feed.DefaultConfig()
	return Config{
		Addr:         f.Addr,
		User:         f.User,
		Password:     f.Password,
		Speed:        1,
		StartOnLogon: true,
		Retain:       1 << 20,
		Heartbeat:    f.Heartbeat,
		LoginTimeout: f.LoginTimeout,
		WriteTimeout: f.WriteTimeout,
	}
}

// Validate names the first bad field.
func (c Config) Validate() error {
	switch {
	case c.Source == nil:
		return errors.New("replay: Source: required")
	case !c.Max && !(c.Speed > 0 && c.Speed <= 1e6):
		return fmt.Errorf("replay: Speed %v: want 0 < Speed <= 1e6 (or Max)", c.Speed)
	case c.Spin < 0 || c.Spin > 10*time.Millisecond:
		return fmt.Errorf("replay: Spin %v: want 0..10ms", c.Spin)
	case c.Loop && (c.ResetEvery != 0 || c.ResetAt != 0):
		return errors.New("replay: ResetEvery, ResetAt: not with Loop")
	}
	return c.feedConfig().Validate()
}

func (c Config) feedConfig() feed.Config {
	f := feed.DefaultConfig()
	f.Addr, f.User, f.Password = c.Addr, c.User, c.Password
	f.Retain, f.StartOnLogon = c.Retain, c.StartOnLogon
	f.Heartbeat, f.LoginTimeout, f.WriteTimeout = c.Heartbeat, c.LoginTimeout, c.WriteTimeout
	f.Now, f.Logger, f.Registerer = c.Now, c.Logger, c.Registerer
	return f
}

// Server is an exchange that plays a Source: logon, retransmission and
// heartbeats are the simulator's (package feed); only the stream differs.
type Server struct {
	cfg  Config
	log  *slog.Logger
	now  func() int64
	feed *feed.Server
	done chan struct{}

	// Progress, written by the player, read by anyone.
	frames, bytes, seq, total atomic.Uint64
	startNs, endNs            atomic.Int64

	mu      sync.Mutex // guards pacing, loops, err, reqRate (after done: read freely)
	pacing  *hdrhistogram.Histogram
	loops   int
	err     error
	reqRate float64
}

// New validates cfg and returns a Server; it binds nothing yet.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, now: cfg.Now, done: make(chan struct{}),
		pacing: hdrhistogram.New(1, int64(time.Hour), 3)}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("component", "replay")
	if s.now == nil {
		s.now = func() int64 { return time.Now().UnixNano() }
	}
	fc := cfg.feedConfig()
	// The stream starts in the source's epoch (0: a new one, the feed's).
	fc.Source, fc.FirstSeq, fc.Epoch = s.play, cfg.Source.FirstSeq(), cfg.Source.FirstEpoch()
	f, err := feed.New(fc)
	if err != nil {
		return nil, err
	}
	s.feed = f
	if !cfg.Loop {
		s.total.Store(cfg.Source.Total())
	}
	return s, nil
}

// Run serves until ctx ends, then closes every session and returns once
// all goroutines have finished. Playback ending (Done) does not stop it:
// sessions stay up, heartbeating, and can still retransmit.
func (s *Server) Run(ctx context.Context) error { return s.feed.Run(ctx) }

// Ready is closed once the server listens.
func (s *Server) Ready() <-chan struct{} { return s.feed.Ready() }

// Addr is the bound listen address (nil before Ready).
func (s *Server) Addr() net.Addr { return s.feed.Addr() }

// Done is closed when playback has ended: the source is exhausted (never
// with Loop), failed (Err), or Run's ctx ended.
func (s *Server) Done() <-chan struct{} { return s.done }

// Err is why playback stopped early (a damaged capture, a database error),
// or nil.
func (s *Server) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Body returns the feed body published for seq, if still held (tests).
func (s *Server) Body(seq uint64) ([]byte, bool) { return s.feed.Body(seq) }

// Published is the highest seq published so far.
func (s *Server) Published() uint64 { return s.feed.Published() }

// Sessions is the number of open feed connections.
func (s *Server) Sessions() int { return s.feed.Sessions() }

// Progress is a snapshot of a run, for progress bars.
type Progress struct {
	Frames, Bytes uint64        // done so far
	Seq           uint64        // last seq published (recorded)
	Total         uint64        // frames expected (0: unknown, or endless with Loop)
	Elapsed       time.Duration // since playback started
}

// Progress reports how far playback is.
func (s *Server) Progress() Progress {
	p := Progress{Frames: s.frames.Load(), Bytes: s.bytes.Load(), Seq: s.seq.Load(), Total: s.total.Load()}
	if st := s.startNs.Load(); st != 0 {
		end := s.endNs.Load()
		if end == 0 {
			end = time.Now().UnixNano()
		}
		p.Elapsed = time.Duration(end - st)
	}
	return p
}

// Summary is the account of a playback.
type Summary struct {
	Frames, Bytes uint64
	Elapsed       time.Duration
	Rate          float64 // achieved frames/s
	RequestedRate float64 // recorded rate x Speed (0 with Max)
	Loops         int     // passes completed
	// Pacing error: actual publish offset - scheduled offset, per frame,
	// measured when the frame is handed to the sessions (just before their
	// socket writes). Zero with Max.
	PacingP50, PacingP99, PacingMax time.Duration
	PacedFrames                     int64
}

// Summary reports the run; complete once Done is closed.
func (s *Server) Summary() Summary {
	p := s.Progress()
	s.mu.Lock()
	defer s.mu.Unlock()
	sm := Summary{Frames: p.Frames, Bytes: p.Bytes, Elapsed: p.Elapsed, RequestedRate: s.reqRate, Loops: s.loops,
		PacedFrames: s.pacing.TotalCount()}
	if p.Elapsed > 0 {
		sm.Rate = float64(p.Frames) / p.Elapsed.Seconds()
	}
	if sm.PacedFrames > 0 {
		sm.PacingP50 = time.Duration(s.pacing.ValueAtQuantile(50))
		sm.PacingP99 = time.Duration(s.pacing.ValueAtQuantile(99))
		sm.PacingMax = time.Duration(s.pacing.Max())
	}
	return sm
}

func (sm Summary) String() string {
	req := "max"
	if sm.RequestedRate > 0 {
		req = fmt.Sprintf("%.0f/s", sm.RequestedRate)
	}
	out := fmt.Sprintf("frames %d, bytes %d, in %v: %.0f frames/s (requested %s)", sm.Frames, sm.Bytes,
		sm.Elapsed.Round(time.Millisecond), sm.Rate, req)
	if sm.Loops > 0 {
		out += fmt.Sprintf(", %d loops", sm.Loops)
	}
	if sm.PacedFrames > 0 {
		out += fmt.Sprintf("; pacing error p50 %v p99 %v max %v", sm.PacingP50, sm.PacingP99, sm.PacingMax)
	}
	return out
}

// batchFrames bounds the frames committed before a Publish at full speed.
const batchFrames = 1024

// play is the feed.Source: it publishes the source's records at their
// scheduled times.
func (s *Server) play(ctx context.Context, p *feed.Publisher) (err error) {
	defer func() {
		if err != nil && ctx.Err() == nil {
			s.mu.Lock()
			s.err = err
			s.mu.Unlock()
		}
		if s.startNs.Load() != 0 {
			s.endNs.Store(time.Now().UnixNano())
		}
		close(s.done)
	}()
	src := s.cfg.Source
	t, frame, err := src.Next(ctx)
	if errors.Is(err, io.EOF) {
		s.log.Warn("replay: the selection is empty; nothing to play")
		return nil
	} else if err != nil {
		return err
	}
	first := p.Next()
	select {
	case <-p.Started():
	case <-ctx.Done():
		return nil
	}
	var (
		pc       = newPacer(t, s.cfg.Speed, s.cfg.Max)
		start    = time.Now()
		timer    = time.NewTimer(time.Hour)
		offset   uint64 // added to seqs in this pass
		lastT    = t
		passN    uint64 // records in this pass
		span     uint64 // seqs in a pass (after the first)
		batch    int
		frames   uint64
		nbytes   uint64
		restamp  = s.cfg.Restamp
		epochN   uint64 // records of this epoch
		srcEpoch = src.FirstEpoch()
		resetAt  = s.cfg.ResetAt
		progress = func() {
			s.frames.Store(frames)
			s.bytes.Store(nbytes)
			s.seq.Store(p.Next() - 1)
		}
	)
	defer timer.Stop()
	s.startNs.Store(start.UnixNano())
	s.log.Info("replay: playback started", "first_seq", first, "total", src.Total(), "speed", s.cfg.Speed, "max", s.cfg.Max, "loop", s.cfg.Loop)
	for {
		if !pc.max {
			due := pc.due(t)
			late := time.Since(start) - due
			if late < 0 {
				p.Publish()
				progress()
				batch = 0
				// The runtime's timers wake up to ~1 ms late; with Spin
				// the last stretch is spent yielding in a loop instead.
				if d := -late - s.cfg.Spin; d > 0 {
					timer.Reset(d)
					select {
					case <-timer.C:
					case <-ctx.Done():
						return nil
					}
				}
				for late = time.Since(start) - due; late < 0; late = time.Since(start) - due {
					runtime.Gosched()
				}
			}
			s.mu.Lock()
			s.pacing.RecordValue(max(int64(late), 1))
			s.mu.Unlock()
		}
		inSeq := binary.LittleEndian.Uint64(frame[wire.FeedLenSize:])
		switch e := src.Epoch(); {
		case e != srcEpoch: // the source's own reset
			srcEpoch = e
			if s.cfg.Loop {
				return fmt.Errorf("replay: the source changes epoch (%d to %d): it cannot loop", p.Epoch(), e)
			}
			if err := p.Reset(e, inSeq+offset); err != nil {
				return fmt.Errorf("replay: source record of epoch %d seq %d: %w", e, inSeq, err)
			}
			epochN = 0
		case s.cfg.ResetEvery > 0 && epochN == s.cfg.ResetEvery, resetAt > 0 && inSeq+offset-1 == resetAt:
			if err := p.Reset(p.Epoch()+1, 1); err != nil {
				return err
			}
			offset, epochN, resetAt = 1-inSeq, 0, 0 // this record is the new epoch's seq 1
		}
		epochN++
		buf := p.Buffer()
		f := append(buf, frame...)
		if offset != 0 {
			seq := binary.LittleEndian.Uint64(f[wire.FeedLenSize:])
			binary.LittleEndian.PutUint64(f[wire.FeedLenSize:], seq+offset)
		}
		if restamp {
			binary.LittleEndian.PutUint64(f[wire.FeedLenSize+8:], uint64(s.now()))
		}
		if err := p.Commit(f); err != nil {
			return fmt.Errorf("replay: source record after seq %d: %w", p.Next()-1, err)
		}
		frames++
		nbytes += uint64(len(f))
		passN++
		if batch++; batch >= batchFrames {
			p.Publish()
			progress()
			batch = 0
			if ctx.Err() != nil {
				return nil
			}
		}
		lastT = t
		t, frame, err = src.Next(ctx)
		if errors.Is(err, io.EOF) {
			if span == 0 {
				s.setRequestedRate(pc, passN, lastT)
			}
			if !s.cfg.Loop {
				break
			}
			if span == 0 {
				span = p.Next() - first
			}
			s.mu.Lock()
			s.loops++
			s.mu.Unlock()
			offset += span
			if err = src.Rewind(ctx); err == nil {
				var t2 int64
				t2, frame, err = src.Next(ctx)
				pc.nextPass(lastT, passN, t2)
				t = t2
				passN = 0
			}
		}
		if err != nil {
			p.Publish()
			progress()
			return err
		}
	}
	p.Publish()
	progress()
	sm := s.Summary()
	s.log.Info("replay: playback done", "summary", sm.String())
	return nil
}

func (s *Server) setRequestedRate(pc *pacer, n uint64, lastT int64) {
	if pc.max || n < 2 || lastT <= pc.t0 {
		return
	}
	s.mu.Lock()
	s.reqRate = float64(n-1) / (float64(lastT-pc.t0) / 1e9) * pc.speed
	s.mu.Unlock()
}

// pacer maps recorded times to offsets from the start of playback. It is a
// pure core: no clock, no sleeping.
type pacer struct {
	t0    int64   // recorded time of the first record of the first pass
	base  int64   // recorded-time offset of the current pass
	speed float64 //
	max   bool
}

func newPacer(t0 int64, speed float64, max bool) *pacer {
	return &pacer{t0: t0, speed: speed, max: max}
}

// due is the scheduled offset of a record with recorded time t; records
// recorded out of order are due at once (negative offsets are harmless).
func (pc *pacer) due(t int64) time.Duration {
	return time.Duration(float64(t-pc.t0+pc.base) / pc.speed)
}

// nextPass starts another pass after one that ended with a record at
// lastT and held n records; the new pass's first record (recorded at
// first) follows the last by the mean inter-arrival time (1 ms if none).
func (pc *pacer) nextPass(lastT int64, n uint64, first int64) {
	gap := int64(time.Millisecond)
	if n > 1 && lastT > pc.t0 {
		gap = (lastT - pc.t0) / int64(n-1)
	}
	// Offset so that first + base' - t0 = (lastT + base - t0) + gap.
	pc.base = lastT + pc.base + gap - first
}
