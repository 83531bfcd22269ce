package cluster

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"net"
	"time"

	"tickrelay/child/client"
	"tickrelay/wire"
)

// Next returns the next line for the caller: a data frame (no duplicate,
// none missing, across moves), the OK of its own SUB and UNSUB, RESET, a
// TIME or PONG it asked for, and ERR lines other than those that move it.
// Directory lines, drains and the work of moving are handled inside; the
// returned Event is reused by the next call. It fails only when closed
// (net.ErrClosed) or when ctx ends while no child answers.
func (cl *Client) Next(ctx context.Context) (*client.Event, error) {
	for {
		if cl.closed.Load() {
			return nil, net.ErrClosed
		}
		if cl.c == nil {
			to := cl.moveTo
			cl.moveTo = ""
			if err := cl.connect(ctx, to); err != nil {
				return nil, err
			}
			continue
		}
		now := time.Now()
		if !cl.moveAt.IsZero() && !now.Before(cl.moveAt) {
			cl.scheduledMove()
			continue
		}
		cl.c.Conn().SetReadDeadline(cl.wakeAt())
		ev, err := cl.c.Next()
		if err != nil {
			if ev != nil { // a frame that did not decode
				return ev, err
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !cl.closed.Load() {
				cl.timers(time.Now())
				continue
			}
			cl.lost(ReasonDead, "")
			continue
		}
		cl.readAt, cl.pinged = time.Unix(0, ev.Recv), false
		if out := cl.take(ev); out {
			return ev, nil
		}
	}
}

// wakeAt is when Next must stop reading to act: a scheduled move, a
// heartbeat, a load poll.
func (cl *Client) wakeAt() time.Time {
	t := cl.readAt.Add(cl.cfg.Heartbeat)
	if cl.pinged {
		t = cl.readAt.Add(2 * cl.cfg.Heartbeat)
	}
	if !cl.moveAt.IsZero() && cl.moveAt.Before(t) {
		t = cl.moveAt
	}
	if cl.cfg.Policy == LeastLoaded && cl.pollAt.Before(t) {
		t = cl.pollAt
	}
	return t
}

// timers runs what a read deadline woke Next for.
func (cl *Client) timers(now time.Time) {
	silent := now.Sub(cl.readAt)
	switch {
	case cl.pinged && silent >= 2*cl.cfg.Heartbeat:
		cl.lost(ReasonDead, "")
		return
	case !cl.pinged && silent >= cl.cfg.Heartbeat:
		cl.pinged = true
		if cl.c.Ping() != nil {
			cl.lost(ReasonDead, "")
			return
		}
	}
	if cl.cfg.Policy == LeastLoaded && !now.Before(cl.pollAt) {
		cl.pollAt = now.Add(cl.cfg.LoadEvery)
		if cl.c.SendLine(wire.CmdChildren) != nil {
			cl.lost(ReasonDead, "")
		}
	}
}

// take handles one line; out reports whether the caller gets it.
func (cl *Client) take(ev *client.Event) (out bool) {
	if cl.group != nil {
		if handled, out := cl.groupLine(ev); handled {
			return out
		}
	}
	switch ev.Kind {
	case wire.LineFrame:
		if cl.group != nil {
			return cl.groupFrame(ev)
		}
		return cl.frame(ev)
	case wire.LineOK:
		return cl.ok(ev)
	case wire.LineReset:
		r, err := ev.Reset()
		if err == nil {
			cl.epoch, cl.conn, cl.allCovered = r.Epoch, r.Seq-1, r.Seq-1
			for s := range cl.covered {
				cl.covered[s] = r.Seq - 1
			}
		}
		return true
	case wire.LineChildren:
		if _, set, err := wire.ParseChildrenLine(ev.Line); err == nil && len(set) > 0 {
			cl.newSet(set)
		}
		return false
	case wire.LineInfo:
		if grace, err := wire.ParseDrainLine(ev.Line); err == nil {
			cl.schedule(ReasonDrain, "", min(cl.cfg.MoveWindow, grace/2))
		}
		return false
	case wire.LineErr:
		code, _ := ev.Err()
		switch code {
		case wire.ErrCodeBusy:
			_, try, _ := wire.ParseBusy(ev.Line)
			cl.lost(ReasonBusy, try)
			return false
		case wire.ErrCodeShutdown, wire.ErrCodeSlow, wire.ErrCodeFlood, wire.ErrCodeTooLong:
			cl.lost(ReasonDead, "") // the child ends this connection
			return code == wire.ErrCodeSlow
		case wire.ErrCodeGone:
			if cl.moving != nil && cl.moving.Seq > 0 {
				cl.resubscribe()
				return false
			}
		}
		return true
	case wire.LinePong:
		return false // ours (heartbeat); the caller's PING is not offered
	}
	return true
}

// frame delivers a data frame unless it was delivered before.
func (cl *Client) frame(ev *client.Event) bool {
	sym := ev.Msg.Security
	if cl.pendingAll || len(cl.pending) > 0 && cl.pendingSym(sym) {
		return true // an image (or a "*" catch-up) before its OK SUB
	}
	c, ok := cl.covered[sym]
	if !ok && cl.all {
		c = cl.allCovered
	}
	if ev.Seq <= c {
		cl.stats.Duplicates++
		return false
	}
	cl.covered[sym] = ev.Seq
	cl.conn = max(cl.conn, ev.Seq)
	return true
}

// pendingSym reports whether symbol code sym has a SUB not yet answered.
func (cl *Client) pendingSym(sym uint32) bool {
	for s := range cl.pending {
		if c, ok := symCode(s); ok && c == sym {
			return true
		}
	}
	return false
}

// ok takes an OK line: the caller's SUB and UNSUB, or a move's answer.
func (cl *Client) ok(ev *client.Event) bool {
	verb, sym, seq, err := ev.OK()
	if err != nil {
		return true
	}
	if e := ev.Epoch(); e != 0 {
		cl.epoch = e
	}
	switch verb {
	case wire.CmdSub:
		wasPending := cl.pending[sym] || sym == "*" && cl.pendingAll
		if sym == "*" {
			cl.pendingAll, cl.all, cl.allCovered = false, true, seq
		} else {
			delete(cl.pending, sym)
			if code, ok := symCode(sym); ok {
				cl.covered[code] = seq
			}
		}
		if cl.moving != nil && cl.moving.Seq == 0 {
			cl.moved()
		}
		return wasPending && !cl.resubbed(sym)
	case wire.CmdResume:
		if cl.moving != nil {
			cl.moved()
		}
		return false
	}
	return true
}

// resubbed reports whether sym's SUB was a move's (the caller had its OK).
func (cl *Client) resubbed(sym string) bool {
	if cl.resubs[sym] { // a nil map reads false
		delete(cl.resubs, sym)
		return true
	}
	return false
}

// newSet takes the directory and decides whether the policy moves.
func (cl *Client) newSet(set []wire.ChildInfo) {
	cl.set = set
	here := -1
	for i, c := range set {
		if c.Addr == cl.cur.Addr {
			here = i
			cl.cur = c
		}
	}
	now := time.Now()
	switch {
	case here < 0 || set[here].State != wire.ChildUp:
		why := ReasonSet
		if here >= 0 {
			why = ReasonDrain
		}
		cl.schedule(why, "", cl.cfg.MoveWindow)
	case cl.cfg.Policy == Sticky:
		if pick := cl.rank(); len(pick) > 0 && pick[0].Addr != cl.cur.Addr {
			cl.schedule(ReasonSet, "", cl.cfg.MoveWindow)
		}
	case cl.cfg.Policy == LeastLoaded && !now.Before(cl.settleAt):
		cl.settleAt = now.Add(cl.settle())
		if to, ok := balance(set, cl.cur.Addr, rand.Float64(), rand.Float64()); ok {
			cl.schedule(ReasonBalance, to.Addr, cl.cfg.MoveWindow)
		}
	}
}

// schedule plans a move within window (random), unless one is planned.
func (cl *Client) schedule(why Reason, to string, window time.Duration) {
	if !cl.moveAt.IsZero() {
		return
	}
	d := time.Duration(0)
	if window > 0 {
		d = rand.N(window)
	}
	cl.moveAt, cl.moveWhy, cl.moveTo = time.Now().Add(d), why, to
}

// scheduledMove runs a planned move, if the policy still wants it.
func (cl *Client) scheduledMove() {
	why, to := cl.moveWhy, cl.moveTo
	cl.moveAt, cl.moveTo = time.Time{}, ""
	if why == ReasonSet || why == ReasonBalance {
		pick := cl.rank()
		stay := len(pick) > 0 && pick[0].Addr == cl.cur.Addr
		if why == ReasonBalance {
			_, inSet := cl.find(cl.cur.Addr)
			there, ok := cl.find(to)
			stay = cl.cur.State == wire.ChildUp && inSet && !(ok && there.State == wire.ChildUp)
		}
		if stay {
			return // the set changed back
		}
	}
	cl.leave(why)
	cl.moveTo = to // Next connects
}

// find returns the child at addr in the set.
func (cl *Client) find(addr string) (wire.ChildInfo, bool) {
	for _, c := range cl.set {
		if c.Addr == addr {
			return c, true
		}
	}
	return wire.ChildInfo{}, false
}

// lost ends the connection for why and moves at once (to try first, when
// a BUSY child named one).
func (cl *Client) lost(why Reason, try string) {
	if why == ReasonDead || why == ReasonBusy {
		cl.failed[cl.cur.Addr] = time.Now().Add(cl.cfg.BackoffMax)
	}
	cl.leave(why)
	cl.moveTo = try
}

// leave closes the current connection and opens a move (if none is open).
func (cl *Client) leave(why Reason) {
	cl.setConn(nil)
	if cl.moving == nil {
		cl.moving = &Move{From: cl.cur.Addr, Reason: why, At: time.Now()}
	}
}

// rank is the policy's order of the children to be on, skipping those
// that failed lately.
func (cl *Client) rank() []wire.ChildInfo {
	now := time.Now()
	return rank(cl.cfg.Policy, cl.cfg.ID, cl.set, cl.cur.Addr, func(c wire.ChildInfo) bool {
		return now.Before(cl.failed[c.Addr])
	})
}

// connect finds a child that answers (first, then the policy's order,
// then the seeds) and resumes there, backing off while none does.
func (cl *Client) connect(ctx context.Context, first string) error {
	for {
		for _, addr := range cl.tries(first) {
			if cl.closed.Load() {
				return net.ErrClosed
			}
			c, set, err := cl.open(ctx, addr)
			if err != nil {
				cl.failed[addr] = time.Now().Add(cl.cfg.BackoffMax)
				continue
			}
			if len(set) > 0 {
				cl.set = set
			}
			cl.attach(c, addr)
			if err := cl.resume(); err != nil {
				cl.setConn(nil)
				continue
			}
			return nil
		}
		cl.backoff = min(max(2*cl.backoff, cl.cfg.BackoffMin), cl.cfg.BackoffMax)
		wait := cl.backoff/2 + rand.N(cl.backoff/2+1)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		first = ""
	}
}

// tries is the order connect dials in: first, the policy's ranking, the
// seeds; what failed lately comes last, so a set that still lists a dead
// child costs one refused dial at most.
func (cl *Client) tries(first string) []string {
	var tries, later []string
	seen := map[string]bool{}
	now := time.Now()
	add := func(addr string) {
		if addr == "" || seen[addr] {
			return
		}
		seen[addr] = true
		if now.Before(cl.failed[addr]) {
			later = append(later, addr)
		} else {
			tries = append(tries, addr)
		}
	}
	add(first)
	for _, c := range cl.rank() {
		add(c.Addr)
	}
	for _, addr := range cl.cfg.Seeds {
		add(addr)
	}
	return append(tries, later...)
}

// resume sends the new child the subscriptions: RESUME after the last
// seq delivered for those answered, SUB for those that were not.
func (cl *Client) resume() error {
	if cl.moving == nil { // a connection made with no move open: the first
		cl.moving = &Move{Reason: ReasonStart, At: time.Now()}
	}
	cl.moving.To = cl.cur.Addr
	if cl.group != nil {
		return cl.rejoin() // its OK GROUP completes the move
	}
	var answered, fresh []string
	from := uint64(math.MaxUint64) // the lowest seq every answered subscription was delivered to
	for _, s := range cl.subs {
		switch {
		case s == "*" && !cl.pendingAll:
			cl.allCovered = max(cl.allCovered, cl.conn)
			from = min(from, cl.allCovered)
			for sym, c := range cl.covered {
				cl.covered[sym] = max(c, cl.conn)
				from = min(from, cl.covered[sym])
			}
			answered = append(answered, s)
		case s != "*" && !cl.pending[s]:
			code, ok := symCode(s)
			if ok {
				cl.covered[code] = max(cl.covered[code], cl.conn)
				from = min(from, cl.covered[code])
			}
			answered = append(answered, s)
		default:
			fresh = append(fresh, s)
		}
	}
	if len(answered) > 0 {
		cl.moving.Seq, cl.moving.Epoch = from+1, cl.epoch
		if err := cl.c.ResumeEpoch(cl.epoch, from+1, answered...); err != nil {
			if !errors.Is(err, client.ErrResumeTooLong) {
				return err
			}
			for _, s := range answered { // too many for one line: one each
				if err := cl.c.ResumeEpoch(cl.epoch, from+1, s); err != nil {
					return err
				}
			}
		}
	}
	if len(fresh) > 0 {
		if err := cl.c.Sub(fresh...); err != nil {
			return err
		}
	}
	if len(answered) == 0 && len(fresh) == 0 {
		cl.moved()
	}
	return nil
}

// resubscribe answers ERR GONE to a move's RESUME: the child no longer
// holds that far back, so every symbol starts afresh with its image and
// the move says Lost.
func (cl *Client) resubscribe() {
	cl.moving.Lost, cl.moving.Seq = true, 0
	cl.stats.Lost++
	if cl.resubs == nil {
		cl.resubs = map[string]bool{}
	}
	var syms []string
	for _, s := range cl.subs {
		if s == "*" {
			cl.resubs[s] = !cl.pendingAll // the caller had its OK: not again
			cl.pendingAll = true
		} else {
			cl.resubs[s] = !cl.pending[s]
			cl.pending[s] = true
		}
		syms = append(syms, s)
	}
	for sym := range cl.covered {
		cl.covered[sym] = 0
	}
	cl.allCovered = 0
	if len(syms) > 0 && cl.c.Sub(syms...) != nil {
		cl.lost(ReasonDead, "")
	}
}

// moved reports the open move: the new child answered.
func (cl *Client) moved() {
	m := cl.moving
	cl.moving = nil
	if m.From == "" && m.Reason == ReasonStart {
		return // the first connection is not a move
	}
	m.Stall = time.Since(m.At)
	if cl.stats.Moves == nil {
		cl.stats.Moves = map[Reason]int{}
	}
	cl.stats.Moves[m.Reason]++
	if cl.cfg.OnMove != nil {
		cl.cfg.OnMove(*m)
	}
}
