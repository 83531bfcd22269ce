// Package harness is the lean load client of `tickrelay perf`: thousands of
// raw TCP subscriber connections that speak just enough of each system's
// protocol (tickrelay text lines, NATS core, Redis RESP pub/sub), take the
// receive time once per read, pull seq and stamps out of each frame by
// position and record the hops. The same code path serves every system, so
// the comparison measures the servers, not the clients.
//
// Each connection has its own goroutine and a fixed read buffer; frames of
// one read share one receive stamp and are recorded under one lock. Nothing
// is allocated per frame.
package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"tickrelay/wire"
)

// Protocol is the wire protocol the harness speaks.
type Protocol string

// Supported protocols.
const (
	Tickrelay Protocol = "tickrelay" // "SUB sym..." lines, '\n' frames
	NATS      Protocol = "nats"      // core NATS: CONNECT, SUB, MSG, PING/PONG
	Redis     Protocol = "redis"     // RESP2 SUBSCRIBE and pushed "message" arrays
)

// Recorder receives the stamps of the frames of one read (latency.Recorder).
type Recorder interface {
	RecordBatch(key int, st []wire.Stamps, clientRecv, offset int64)
}

// Config describes the load.
type Config struct {
	Protocol Protocol
	// Addrs are the servers; connection i dials Addrs[i%len(Addrs)].
	Addrs []string
	// Clients is the number of connections.
	Clients int
	// Subscriptions returns the topics of connection i: symbols for
	// tickrelay, subjects for NATS, channels for Redis.
	Subscriptions func(i int) []string
	// Recorder gets every frame's stamps; nil records nothing.
	Recorder Recorder
	// ReadBuffer is each connection's read buffer size.
	ReadBuffer int
	// DialTimeout bounds each dial; ReadyTimeout bounds Start as a whole.
	DialTimeout, ReadyTimeout time.Duration
	// DialConcurrency bounds dials in flight.
	DialConcurrency int
	// Now is the receive clock (ns); nil means time.Now().UnixNano().
	Now func() int64
	// Mode picks how connections are read.
	Mode Mode
}

// Mode is how the harness reads its connections.
type Mode string

const (
	// ModeGoroutines reads each connection in its own goroutine with its
	// own ReadBuffer (Go's netpoller does the waiting).
	ModeGoroutines Mode = "goroutines"
	// ModeEpoll reads every connection from Workers goroutines, each with
	// its own epoll set and one shared ReadBuffer; a connection keeps only
	// its incomplete tail (at most maxUnit bytes). Linux only.
	ModeEpoll Mode = "epoll"
)

// DefaultConfig returns a Config for 1 client over tickrelay.
func DefaultConfig() Config {
	return Config{
		Protocol:        Tickrelay,
		Mode:            ModeGoroutines,
		Clients:         1,
		ReadBuffer:      16 << 10,
		DialTimeout:     5 * time.Second,
		ReadyTimeout:    60 * time.Second,
		DialConcurrency: 64,
	}
}

// Validate checks the config.
func (c Config) Validate() error {
	switch c.Protocol {
	case Tickrelay, NATS, Redis:
	default:
		return fmt.Errorf("harness: Protocol %q: want tickrelay, nats or redis", c.Protocol)
	}
	if c.Mode != ModeGoroutines && c.Mode != ModeEpoll {
		return fmt.Errorf("harness: Mode %q: want goroutines or epoll", c.Mode)
	}
	switch {
	case len(c.Addrs) == 0:
		return errors.New("harness: Addrs: need at least one")
	case c.Clients < 1:
		return fmt.Errorf("harness: Clients %d: need at least 1", c.Clients)
	case c.Subscriptions == nil:
		return errors.New("harness: Subscriptions: required")
	case c.ReadBuffer < 4096:
		return fmt.Errorf("harness: ReadBuffer %d: need at least 4096", c.ReadBuffer)
	case c.DialTimeout <= 0 || c.ReadyTimeout <= 0:
		return errors.New("harness: DialTimeout, ReadyTimeout: must be positive")
	case c.DialConcurrency < 1:
		return fmt.Errorf("harness: DialConcurrency %d: need at least 1", c.DialConcurrency)
	}
	return nil
}

// Stats are counters over all connections.
type Stats struct {
	Conns       int   `json:"conns"`         // connections subscribed and reading
	Frames      int64 `json:"frames"`        // data frames received after subscribing
	Bytes       int64 `json:"bytes"`         // bytes read
	Images      int64 `json:"images"`        // frames received before the subscription was confirmed
	BadFrames   int64 `json:"bad_frames"`    // data lines without parsable stamps
	ServerErrs  int64 `json:"server_errs"`   // ERR / -ERR lines from the server
	Disconnects int64 `json:"disconnects"`   // connections lost before Close
	FirstSeq    int64 `json:"first_seq_min"` // lowest seq seen after subscribing (0: none)
	LastSeq     int64 `json:"last_seq_max"`  // highest seq seen
	// MaxStall is the longest any connection's stream stood still beyond
	// the feed's own pauses: the most its end-to-end latency grew from one
	// frame to the next (ns).
	MaxStall int64 `json:"max_stall_ns"`
}

// Harness runs the subscriber connections.
type Harness struct {
	cfg   Config
	now   func() int64
	conns []*conn
	wg    sync.WaitGroup
	done  chan struct{}
	once  sync.Once

	disconnects atomic.Int64
	poll        *poller // ModeEpoll
}

type conn struct {
	id    int
	c     net.Conn
	ready atomic.Bool
	fd    int // ModeEpoll

	// Owned by the reader.
	want, confirmed int

	frames, bytes, images, bad, errs, firstSeq, lastSeq atomic.Int64

	// Owned by the reader: the last frame's latency, for maxStall.
	lastLat  int64
	hasLat   bool
	maxStall atomic.Int64
}

// New validates cfg.
func New(cfg Config) (*Harness, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	h := &Harness{cfg: cfg, now: cfg.Now, done: make(chan struct{})}
	if h.now == nil {
		h.now = func() int64 { return time.Now().UnixNano() }
	}
	if cfg.Mode == ModeEpoll {
		p, err := newPoller(h, runtime.GOMAXPROCS(0))
		if err != nil {
			return nil, err
		}
		h.poll = p
	}
	return h, nil
}

// Start dials every connection, subscribes, and returns once every
// subscription is confirmed by its server (or with the first error).
// Connections keep reading until Close.
func (h *Harness) Start(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.ReadyTimeout)
	defer cancel()
	h.conns = make([]*conn, h.cfg.Clients)
	sem := make(chan struct{}, h.cfg.DialConcurrency)
	errc := make(chan error, 1)
	var dials sync.WaitGroup
	for i := range h.conns {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			dials.Wait()
			return fmt.Errorf("harness: dialing: %w", ctx.Err())
		}
		dials.Add(1)
		go func() {
			defer dials.Done()
			defer func() { <-sem }()
			if err := h.open(ctx, i); err != nil {
				select {
				case errc <- err:
				default:
				}
				cancel()
			}
		}()
	}
	dials.Wait()
	select {
	case err := <-errc:
		return err
	default:
	}
	// Wait for every confirmation.
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		n := 0
		for _, c := range h.conns {
			if c != nil && c.ready.Load() {
				n++
			}
		}
		if n == len(h.conns) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("harness: %d of %d connections subscribed: %w", n, len(h.conns), ctx.Err())
		case <-h.done:
			return errors.New("harness: closed")
		case <-tick.C:
		}
	}
}

// open dials connection i, sends its subscriptions and starts its reader.
func (h *Harness) open(ctx context.Context, i int) error {
	d := net.Dialer{Timeout: h.cfg.DialTimeout}
	addr := h.cfg.Addrs[i%len(h.cfg.Addrs)]
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("harness: conn %d: %w", i, err)
	}
	c := &conn{id: i, c: nc}
	subs := h.cfg.Subscriptions(i)
	var out []byte
	want := 0
	switch h.cfg.Protocol {
	case Tickrelay:
		out, want = tickrelaySubs(subs)
	case NATS:
		out = append(out, "CONNECT {\"verbose\":false,\"pedantic\":false,\"echo\":false}\r\n"...)
		for k, s := range subs {
			out = append(out, "SUB "...)
			out = append(out, s...)
			out = append(out, ' ')
			out = strconv.AppendInt(out, int64(k+1), 10)
			out = append(out, "\r\n"...)
		}
		out = append(out, "PING\r\n"...) // its PONG confirms every SUB before it
		want = 1
	case Redis:
		out = append(out, '*')
		out = strconv.AppendInt(out, int64(len(subs)+1), 10)
		out = append(out, "\r\n$9\r\nSUBSCRIBE\r\n"...)
		for _, s := range subs {
			out = appendBulk(out, s)
		}
		want = len(subs)
	}
	if _, err := nc.Write(out); err != nil {
		nc.Close()
		return fmt.Errorf("harness: conn %d: subscribe: %w", i, err)
	}
	c.want = want
	h.conns[i] = c
	if h.cfg.Mode == ModeEpoll {
		if err := h.poll.add(c, i); err != nil {
			nc.Close()
			return fmt.Errorf("harness: conn %d: %w", i, err)
		}
		return nil
	}
	h.wg.Add(1)
	go h.read(c)
	return nil
}

// tickrelaySubs builds SUB lines (each under wire.MaxLineLen) and the number
// of "OK SUB" confirmations to expect.
func tickrelaySubs(subs []string) ([]byte, int) {
	var out []byte
	lineStart := 0
	for k, s := range subs {
		if k == 0 || len(out)-lineStart+1+len(s) > wire.MaxLineLen-1 {
			if k > 0 {
				out = append(out, '\n')
			}
			lineStart = len(out)
			out = append(out, wire.CmdSub...)
		}
		out = append(out, ' ')
		out = append(out, s...)
	}
	if len(subs) > 0 {
		out = append(out, '\n')
	}
	return out, len(subs)
}

func appendBulk(dst []byte, s string) []byte {
	dst = append(dst, '$')
	dst = strconv.AppendInt(dst, int64(len(s)), 10)
	dst = append(dst, "\r\n"...)
	dst = append(dst, s...)
	return append(dst, "\r\n"...)
}

// read is connection c's loop in ModeGoroutines.
func (h *Harness) read(c *conn) {
	defer h.wg.Done()
	defer c.c.Close()
	buf := make([]byte, h.cfg.ReadBuffer)
	stamps := make([]wire.Stamps, 0, h.cfg.ReadBuffer/128)
	have := 0
	for {
		n, err := c.c.Read(buf[have:])
		if n > 0 {
			var perr error
			have, stamps, perr = h.consume(c, buf, have+n, n, stamps, h.now())
			if perr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	h.lost()
}

// lost counts a connection that ended before Close.
func (h *Harness) lost() {
	select {
	case <-h.done:
	default:
		h.disconnects.Add(1)
	}
}

// consume parses buf[:have] (n of it just read at recv), records the data
// frames, and moves the incomplete tail to the front of buf; it returns the
// tail's length. An error means the connection must be dropped.
func (h *Harness) consume(c *conn, buf []byte, have, n int, stamps []wire.Stamps, recv int64) (int, []wire.Stamps, error) {
	c.bytes.Add(int64(n))
	stamps, used, perr := h.parse(c, buf[:have], stamps[:0])
	if len(stamps) > 0 && h.cfg.Recorder != nil {
		h.cfg.Recorder.RecordBatch(c.id, stamps, recv, 0)
	}
	c.noteStall(stamps, recv)
	if perr != nil {
		c.errs.Add(1)
		return 0, stamps, perr
	}
	have = copy(buf, buf[used:have])
	if have == len(buf) { // one unit larger than the buffer
		c.errs.Add(1)
		return 0, stamps, errTooLarge
	}
	return have, stamps, nil
}

// noteStall keeps the most c's latency grew between consecutive frames.
func (c *conn) noteStall(stamps []wire.Stamps, recv int64) {
	for _, st := range stamps {
		lat := recv - st.ExchSend
		if c.hasLat && lat-c.lastLat > c.maxStall.Load() {
			c.maxStall.Store(lat - c.lastLat)
		}
		c.lastLat, c.hasLat = lat, true
	}
}

var errTooLarge = errors.New("harness: unit larger than the read buffer")

// parse consumes every complete unit in buf, appending the stamps of data
// frames to st; it answers NATS PINGs on c.
func (h *Harness) parse(c *conn, buf []byte, st []wire.Stamps) ([]wire.Stamps, int, error) {
	used := 0
	for used < len(buf) {
		var frame []byte
		switch h.cfg.Protocol {
		case Tickrelay:
			i := bytes.IndexByte(buf[used:], '\n')
			if i < 0 {
				return st, used, nil
			}
			line := buf[used : used+i]
			used += i + 1
			switch wire.KindOf(line) {
			case wire.LineFrame:
				frame = line
			case wire.LineOK:
				if bytes.HasPrefix(line, []byte("OK SUB ")) {
					c.confirmed++
				}
			case wire.LineErr:
				c.errs.Add(1)
			}
		case NATS:
			kind, payload, n, err := nextNATS(buf[used:])
			if err == errShort {
				return st, used, nil
			}
			if err != nil {
				return st, used, err
			}
			used += n
			switch kind {
			case natsMsg:
				frame = bytes.TrimSuffix(payload, []byte{'\n'})
			case natsPing:
				if _, err := c.c.Write([]byte("PONG\r\n")); err != nil {
					return st, used, err
				}
			case natsPong:
				c.confirmed++
			case natsErr:
				c.errs.Add(1)
			}
		case Redis:
			kind, payload, n, err := nextRESP(buf[used:])
			if err == errShort {
				return st, used, nil
			}
			if err != nil {
				return st, used, err
			}
			used += n
			switch kind {
			case respMessage:
				frame = bytes.TrimSuffix(payload, []byte{'\n'})
			case respSubscribe:
				c.confirmed++
			}
		}
		if c.confirmed >= c.want && !c.ready.Load() {
			c.ready.Store(true)
		}
		if frame == nil {
			continue
		}
		if !c.ready.Load() {
			c.images.Add(1)
			continue
		}
		seq, s, ok := FrameStamps(frame)
		if !ok {
			c.bad.Add(1)
			continue
		}
		c.frames.Add(1)
		if c.firstSeq.Load() == 0 {
			c.firstSeq.Store(int64(seq))
		}
		if int64(seq) > c.lastSeq.Load() {
			c.lastSeq.Store(int64(seq))
		}
		st = append(st, s)
	}
	return st, used, nil
}

// Stats sums the counters of every connection.
func (h *Harness) Stats() Stats {
	var s Stats
	for _, c := range h.conns {
		if c == nil {
			continue
		}
		if c.ready.Load() {
			s.Conns++
		}
		s.Frames += c.frames.Load()
		s.Bytes += c.bytes.Load()
		s.Images += c.images.Load()
		s.BadFrames += c.bad.Load()
		s.ServerErrs += c.errs.Load()
		s.LastSeq = max(s.LastSeq, c.lastSeq.Load())
		s.MaxStall = max(s.MaxStall, c.maxStall.Load())
		if f := c.firstSeq.Load(); f > 0 && (s.FirstSeq == 0 || f < s.FirstSeq) {
			s.FirstSeq = f
		}
	}
	s.Disconnects = h.disconnects.Load()
	return s
}

// WaitQuiet returns once Stats().Frames reaches want, or stops changing for
// quiet, or ctx ends; it returns the last Stats.
func (h *Harness) WaitQuiet(ctx context.Context, want int64, quiet time.Duration) Stats {
	last := h.Stats()
	since := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if last.Frames >= want && want > 0 {
			return last
		}
		select {
		case <-ctx.Done():
			return last
		case <-tick.C:
		}
		s := h.Stats()
		if s.Frames != last.Frames {
			since = time.Now()
		} else if time.Since(since) >= quiet {
			return s
		}
		last = s
	}
}

// Close closes every connection and waits for the readers. Idempotent.
func (h *Harness) Close() error {
	h.once.Do(func() {
		close(h.done)
		if h.poll != nil {
			h.poll.stop() // before closing fds the workers might read
		}
		for _, c := range h.conns {
			if c != nil {
				c.c.Close()
			}
		}
	})
	h.wg.Wait()
	return nil
}
