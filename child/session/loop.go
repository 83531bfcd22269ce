package session

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync/atomic"
	"time"

	"tickrelay/alert"
	"tickrelay/child/frames"
	"tickrelay/control"
	"tickrelay/entitle"
	"tickrelay/internal/ratelimit"
	"tickrelay/wire"
)

// Config is a Loop's policy.
type Config struct {
	MaxPending        int           // unsent bytes at which a client is slow
	Conflate          bool          // slow policy: conflate (else disconnect)
	SlowTimeout       time.Duration // conflate: longest a client may stay behind
	SlowLinger        time.Duration // a cut client's time to take its last line before it is closed
	MaxCommandsPerSec int           // flood limit
	// Admission (limits.go): a command rate and burst per client (0: no
	// limit; over it ERR BUSY), subscriptions per client (0: no limit;
	// ERR LIMIT), and Overloaded, asked at each SUB and RESUME (nil:
	// never; true: ERR BUSY).
	CmdRate    float64
	CmdBurst   int
	MaxSubs    int
	Overloaded func() bool
	// Entitlements (auth.go): the table in force (nil, or returning nil:
	// none, AUTH is not asked for) and how long a client has to AUTH.
	Entitlements func() *entitle.Table
	AuthTimeout  time.Duration
	// Queue groups (group.go): Submit sends a join or leave to the
	// sequencing root (nil: no groups). Origin names this loop across the
	// children ("child/loop"): a member without an identity is "~",
	// Origin, "." and a counter.
	Submit func(control.Op) error
	Origin string
	// Alerts (alerts.go): reads the child's alert replica, read locked
	// (nil: no alerts); MaxAlerts caps an identity's alerts (0: no cap).
	Alerts    func(read func(s *alert.Set))
	MaxAlerts int
	// Batch, when set, writes a flush's client frames in one submission
	// (batch.go); nil: a Conn.Write each.
	Batch Batcher
	Now   func() int64 // the clock, ns (time.Now().UnixNano when nil)
	Log   *slog.Logger
}

// Loop is one event loop's share of the clients.
type Loop struct {
	cfg  Config
	src  *frames.Shared
	m    *Metrics
	warn warner

	f          *fanout
	clients    map[*Client]struct{}
	stale      []*Client // conflated clients waiting for resync
	resyncAt   int64     // the stale clients are not looked at again before
	batched    []*Client // clients whose frames this flush's Batch holds
	behind     []*Client // clients owed frames (behind.go)
	behindNext int       // where the next pass over them starts
	lingering  []*Client // cut clients waiting to be closed (slow.go)
	// busy mirrors whether any of those lists holds a client, for the
	// engine's ticker goroutine, which then has the loop run Tick: they
	// must catch up, resync, time out or close on a quiet feed too, not
	// only after a drain.
	busy atomic.Bool
	seen map[uint64]struct{} // scratch: the symbols of one command line
	img  struct {            // the shared image of SUB * (sub.go)
		buf []byte
		p   uint64
	}
	epoch    uint32         // of the frames it delivers (epoch.go)
	children []byte         // the CHILDREN line (children.go)
	deferred []deferredLine // lines waiting for the core's epoch
	unauthed []*Client      // clients yet to AUTH, oldest first (auth.go)
	groups   *groupState    // queue groups (group.go)
	alerts   *alertState    // alert identities (alerts.go)
}

// NewLoop returns a loop serving images and history from src.
func NewLoop(cfg Config, src *frames.Shared, m *Metrics) *Loop {
	if cfg.Now == nil {
		cfg.Now = func() int64 { return time.Now().UnixNano() }
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.SlowLinger <= 0 {
		cfg.SlowLinger = DefaultSlowLinger
	}
	l := &Loop{cfg: cfg, src: src, m: m, warn: warner{log: cfg.Log}, f: newFanout(),
		clients: make(map[*Client]struct{}), seen: make(map[uint64]struct{}), epoch: src.Epoch(), groups: newGroupState(), alerts: newAlertState()}
	l.f.groups = l.groups
	l.f.gather = cfg.Batch != nil
	return l
}

// DefaultSlowLinger is Config.SlowLinger's default.
const DefaultSlowLinger = time.Second

// Open starts serving c.
func (l *Loop) Open(c Conn) *Client {
	now := l.cfg.Now()
	cl := &Client{conn: c, cmds: ratelimit.New(l.cfg.CmdRate, l.cfg.CmdBurst, now)}
	l.clients[cl] = struct{}{}
	l.opened(cl, now)
	return cl
}

// Closed forgets cl once its connection has closed.
func (l *Loop) Closed(cl *Client) {
	if cl.conn == nil {
		return
	}
	cl.dead = true
	l.leaveBehind(cl)
	l.f.remove(cl)
	l.leaveGroups(cl)
	l.leaveAlerts(cl)
	l.leaveAuth(cl)
	delete(l.clients, cl)
	cl.conn = nil
}

// Subs is the count of subscriptions its clients hold ("*" counts one);
// safe from any goroutine.
func (l *Loop) Subs() int64 { return l.f.nsubs.Load() }

// Clients is the count of open clients.
func (l *Loop) Clients() int { return len(l.clients) }

// Input runs the complete lines of data (bytes the client sent, appended
// to any partial line it sent before). close is true when cl must be closed
// now (an ERR that ends the connection was queued).
func (l *Loop) Input(cl *Client, data []byte) (close bool) {
	if cl.dead {
		return false
	}
	defer l.noteBusy()
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
		if cl.behind && !l.lagging() { // replies follow the frames it is owed
			l.catchUp(cl, math.MaxInt)
			if cl.conn == nil {
				return false
			}
			l.checkSlow(cl, l.unsent(cl))
			if cl.dead {
				break
			}
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

// mustClose: cl was marked dead and its connection is still open (a slow
// client cut lingers instead: the lingering pass closes it).
func (l *Loop) mustClose(cl *Client) bool { return cl.dead && cl.conn != nil && cl.lingerUntil == 0 }

// Add hands the frames of b to their subscribers, stamped with child send
// time now; Flush writes them out.
func (l *Loop) Add(b *frames.Batch, now int64) {
	if b.Reset != nil {
		l.reset(b.Reset)
		return
	}
	if b.Children != nil {
		l.newChildren(b)
		return
	}
	if b.Control != nil {
		l.applyControl(b.Control, b.Last)
		return
	}
	l.f.add(b, now)
}

// Deliveries is the count of frame-to-client deliveries since the last Flush.
func (l *Loop) Deliveries() int { return len(l.f.sent) }

// Flush writes each dirty client's frames (send), applies the slow-client
// policy to those whose unsent bytes pass MaxPending, and runs the passes
// over the clients behind and the cut ones.
func (l *Loop) Flush() {
	var bytes, writes int
	for _, cl := range l.f.dirty {
		out := l.f.take(cl)
		if cl.dead {
			continue
		}
		if l.batch(cl, out) {
			bytes, writes = bytes+len(out), writes+1
			continue
		}
		n, w, unsent := l.send(cl, out)
		bytes, writes = bytes+n, writes+w
		if cl.conn != nil {
			l.checkSlow(cl, unsent)
		}
	}
	l.submitBatch()
	l.f.flushed()
	l.m.BytesOut.Add(float64(bytes))
	l.m.Writes.Add(float64(writes))
	l.m.FramesOut.Add(float64(l.f.frames))
	l.f.frames = 0
	if len(l.groups.counts) > 0 && l.m.GroupOut != nil { // groups with no member left keep their few bytes
		l.groups.flushCounts(l.m)
	}
	l.passBehind()
	l.passLingering()
	l.noteBusy()
}

// Tick runs, on a quiet feed, what a drain's Flush and Resync would:
// catch-ups, resyncs, timeouts and closes.
func (l *Loop) Tick() {
	l.authTimeouts()
	l.Resync()
	l.passBehind()
	l.passLingering()
	l.noteBusy()
}

// NeedsTick reports whether the loop has clients behind, stale or cut and
// waiting; it may be called from any goroutine.
func (l *Loop) NeedsTick() bool { return l.busy.Load() }

func (l *Loop) noteBusy() {
	l.busy.Store(len(l.stale)+len(l.behind)+len(l.lingering)+len(l.unauthed) > 0)
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
	l.checkSlow(cl, l.unsent(cl))
}

func (l *Loop) replyErr(cl *Client, code, reason string) {
	l.m.ClientErrors.WithLabelValues(code).Inc()
	cl.out = wire.AppendErr(cl.out, code, reason)
}
