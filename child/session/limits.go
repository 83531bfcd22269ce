package session

import (
	"fmt"
	"time"

	"tickrelay/child/frames"
	"tickrelay/wire"
)

// Per-client limits: a command rate (ERR BUSY retry=, the connection
// lives; a client that keeps pushing meets the flood limit, ERR FLOOD),
// subscriptions per client (ERR LIMIT sym), and the loop's overload
// (SUB and RESUME get ERR BUSY while its fan-out is behind).

// permitted drops from cmd's symbols (and cl.hashes, which follow them)
// those cl may not subscribe: not in its grant (ERR DENIED sym) or past
// MaxSubs (ERR LIMIT sym).
func (l *Loop) permitted(cl *Client, cmd *wire.Command) {
	n := len(cl.subs)
	if cl.all {
		n++
	}
	syms, hashes := cmd.Symbols[:0], cl.hashes[:0]
	for i, sym := range cmd.Symbols {
		h, all := cl.hashes[i], isAll(sym)
		if !all && !cl.grant.AllowsSymbol(sym) {
			l.deny(cl, sym, "")
			continue
		}
		_, have := cl.subs[h]
		if all {
			have = cl.all
		}
		if !have && l.cfg.MaxSubs > 0 && n >= l.cfg.MaxSubs {
			cl.sym = frames.CanonicalSymbol(cl.sym[:0], sym)
			l.replyErr(cl, wire.ErrCodeLimit, fmt.Sprintf("%s: at most %d subscriptions", cl.sym, l.cfg.MaxSubs))
			continue
		}
		if !have {
			n++
		}
		syms, hashes = append(syms, sym), append(hashes, h)
	}
	cmd.Symbols, cl.hashes = syms, hashes
}

// refuse answers a line refused for now: ERR BUSY retry=.
func (l *Loop) refuse(cl *Client, retry time.Duration) {
	l.m.ClientErrors.WithLabelValues(wire.ErrCodeBusy).Inc()
	cl.out = wire.AppendBusy(cl.out, retry, "")
}

// throttle runs the per-line limits before a command: the client's
// command rate, and for SUB and RESUME the loop's overload. It reports
// whether the command may run.
func (l *Loop) throttle(cl *Client, verb string, recv int64) bool {
	if ok, wait := cl.cmds.Take(recv); !ok {
		l.m.Throttled.Inc()
		l.refuse(cl, max(wait, time.Millisecond))
		return false
	}
	if (verb == wire.CmdSub || verb == wire.CmdResume) && l.cfg.Overloaded != nil && l.cfg.Overloaded() {
		l.m.Shed.Inc()
		l.refuse(cl, time.Second)
		return false
	}
	return true
}
