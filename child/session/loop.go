package session

import (
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"tickrelay/child/frames"
	"tickrelay/wire"
)

// Config is a Loop's policy.
type Config struct {
	MaxPending        int           // unsent bytes at which a client is slow
	Conflate          bool          // slow policy: conflate (else disconnect)
	SlowTimeout       time.Duration // conflate: longest a client may stay behind
	MaxCommandsPerSec int           // flood limit
	Now               func() int64  // the clock, ns (time.Now().UnixNano when nil)
	Log               *slog.Logger
}

// Loop is one event loop's share of the clients.
type Loop struct {
	cfg  Config
	src  *frames.Shared
	m    *Metrics
	warn warner

	f       *fanout
	clients map[*Client]struct{}
	stale   []*Client // conflated clients waiting for resync
	// hasStale mirrors len(stale) > 0 for the engine's ticker goroutine,
	// which then has the loop run Resync: a stale client must catch up
	// (or time out) on a quiet feed too, not only after a drain.
	hasStale atomic.Bool
	seen     map[uint64]struct{} // scratch: the symbols of one command line
}

// NewLoop returns a loop serving images and history from src.
func NewLoop(cfg Config, src *frames.Shared, m *Metrics) *Loop {
	if cfg.Now == nil {
		cfg.Now = func() int64 { return time.Now().UnixNano() }
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Loop{cfg: cfg, src: src, m: m, warn: warner{log: cfg.Log}, f: newFanout(),
		clients: make(map[*Client]struct{}), seen: make(map[uint64]struct{})}
}

// Open starts serving c.
func (l *Loop) Open(c Conn) *Client {
	cl := &Client{conn: c}
	l.clients[cl] = struct{}{}
	return cl
}

// Closed forgets cl once its connection has closed.
func (l *Loop) Closed(cl *Client) {
	if cl.conn == nil {
		return
	}
	cl.dead = true
	l.f.remove(cl)
	delete(l.clients, cl)
	cl.conn = nil
}

// Clients is the count of open clients.
func (l *Loop) Clients() int { return len(l.clients) }

// Input runs the complete lines of data (bytes the client sent, appended
// to any partial line it sent before). close is true when cl must be closed
// now (an ERR that ends the connection was queued).
func (l *Loop) Input(cl *Client, data []byte) (close bool) {
	if cl.dead {
		return false
	}
	recv := l.cfg.Now()
	buf := data
	if len(cl.in) > 0 {
		cl.in = append(cl.in, data...)
		buf = cl.in
	}
	cl.out = cl.out[:0]
	replied := 0 // bytes of the big replies written for this read's lines
	for len(buf) > 0 && !cl.dead {
		line, n, err := wire.NextLine(buf)
		if errors.Is(err, wire.ErrShort) {
			break
		}
		if err != nil {
			l.writeOut(cl)
			l.writeErr(cl, wire.ErrCodeTooLong, fmt.Sprintf("line over %d bytes", wire.MaxLineLen))
			return l.mustClose(cl)
		}
		buf = buf[n:]
		if recv-cl.winAt >= int64(time.Second) {
			cl.winAt, cl.winN = recv, 0
		}
		if cl.winN++; cl.winN > l.cfg.MaxCommandsPerSec {
			l.writeOut(cl)
			l.writeErr(cl, wire.ErrCodeFlood, fmt.Sprintf("over %d commands/s", l.cfg.MaxCommandsPerSec))
			return l.mustClose(cl)
		}
		l.command(cl, line, recv)
		if len(cl.out) >= replyFlushAt {
			// A big answer (an image, a history) goes out, and is counted
			// against MaxPending, before the next line's. The replies to
			// one read share a grace (a client sends its requests, then
			// reads them all) of at most MaxReadGrace, or of the largest
			// reply: pipelined SUB * or RESUME lines could otherwise pile
			// up gigabytes here.
			replied += len(cl.out)
			cl.grace = max(cl.grace, min(replied, max(len(cl.out), MaxReadGrace)))
			l.writeOut(cl)
		}
	}
	if cl.dead {
		return l.mustClose(cl)
	}
	cl.in = append(cl.in[:0], buf...)
	l.writeOut(cl)
	return l.mustClose(cl)
}

// replyFlushAt is the size of pending replies at which Input writes them
// out before running the client's next line.
const replyFlushAt = 64 << 10

// MaxReadGrace bounds the grace the replies to one read of a client's lines
// share (each reply gets at least its own size).
const MaxReadGrace = 64 << 20

// mustClose: cl was marked dead and its connection is still open.
func (l *Loop) mustClose(cl *Client) bool { return cl.dead && cl.conn != nil }

// Add hands the frames of b to their subscribers, stamped with child send
// time now; Flush writes them out.
func (l *Loop) Add(b *frames.Batch, now int64) { l.f.add(b, now) }

// Deliveries is the count of frame-to-client deliveries since the last Flush.
func (l *Loop) Deliveries() int { return len(l.f.sent) }

// Flush writes each dirty client's frames with one Write and applies the
// slow-client policy to those whose unsent bytes pass MaxPending.
func (l *Loop) Flush() {
	var bytes, writes int
	for _, cl := range l.f.dirty {
		out := l.f.take(cl)
		if !cl.dead {
			bytes += len(out)
			cl.conn.Write(out) // copies what the socket does not take
			writes++
		}
		if l.tooSlow(cl) {
			l.closeNow(cl)
		}
	}
	l.f.flushed()
	l.m.BytesOut.Add(float64(bytes))
	l.m.Writes.Add(float64(writes))
	l.m.FramesOut.Add(float64(l.f.frames))
	l.f.frames = 0
}

// Shutdown tells every client the child is stopping and closes it.
func (l *Loop) Shutdown() {
	for cl := range l.clients {
		l.writeErr(cl, wire.ErrCodeShutdown, "child is shutting down")
		l.closeNow(cl)
	}
}

// writeErr writes an ERR line best-effort and marks cl dead; the caller
// closes it.
func (l *Loop) writeErr(cl *Client, code, reason string) {
	if cl.conn == nil {
		return
	}
	l.m.ClientErrors.WithLabelValues(code).Inc()
	cl.dead = true
	cl.conn.Write(wire.AppendErr(nil, code, reason))
}

// closeNow closes cl (outside Input, which reports it instead).
func (l *Loop) closeNow(cl *Client) {
	if c := cl.conn; c != nil { // nil: a write error already closed it
		cl.dead = true
		c.Close()
	}
}

// writeOut writes cl's pending replies.
func (l *Loop) writeOut(cl *Client) {
	if len(cl.out) == 0 || cl.dead {
		return
	}
	cl.grace = max(cl.grace, len(cl.out))
	l.m.BytesOut.Add(float64(len(cl.out)))
	cl.conn.Write(cl.out)
	if cap(cl.out) > 1<<20 {
		cl.out = nil
	} else {
		cl.out = cl.out[:0]
	}
	if cl.conn == nil { // write error closed it
		return
	}
	l.tooSlow(cl)
}

func (l *Loop) replyErr(cl *Client, code, reason string) {
	l.m.ClientErrors.WithLabelValues(code).Inc()
	cl.out = wire.AppendErr(cl.out, code, reason)
}
