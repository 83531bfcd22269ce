package session

import (
	"bytes"
	"fmt"
	"slices"

	"tickrelay/child/frames"
	"tickrelay/entitle"
	"tickrelay/wire"
)

// Entitlements: where the child has a table, a client's first line must be
// "AUTH token" (ERR AUTH and close otherwise, or after AuthTimeout); its
// token's grant then decides what it may see. A named symbol is checked
// at SUB and RESUME (ERR DENIED sym: the same answer whether or not the
// symbol exists); on "*" each frame is (fanout, history, the image). A
// reload (Reentitle) takes effect between two drains: what it revokes is
// answered ERR DENIED and its frames stop there.

// table is the entitlements table in force (nil: none).
func (l *Loop) table() *entitle.Table {
	if l.cfg.Entitlements == nil {
		return nil
	}
	return l.cfg.Entitlements()
}

// opened starts cl's AUTH clock where entitlements apply.
func (l *Loop) opened(cl *Client, now int64) {
	if l.table() == nil {
		cl.authed = true
		return
	}
	cl.openedAt = now
	l.unauthed = append(l.unauthed, cl)
	l.noteBusy()
}

// leaveAuth forgets a closed client's AUTH.
func (l *Loop) leaveAuth(cl *Client) {
	if cl.identity != "" && l.m.Authenticated != nil {
		l.m.Authenticated.Dec()
	}
	cl.identity = ""
}

// gate runs before each line of a client that has not passed AUTH: only
// AUTH may come. It reports whether the line may run.
func (l *Loop) gate(cl *Client, line []byte) bool {
	if cl.authed {
		return true
	}
	cmd, err := wire.ParseCommand(line, cl.syms[:0])
	if err == nil && cmd.Verb == wire.CmdAuth {
		return true
	}
	why := "AUTH token first"
	if err != nil && bytes.HasPrefix(line, []byte(wire.CmdAuth+" ")) {
		why = shortReason(err) // a malformed AUTH: say what is wrong with it
	}
	l.writeOut(cl)
	l.writeErr(cl, wire.ErrCodeAuth, why)
	return false
}

// auth runs AUTH token.
func auth(l *Loop, cl *Client, cmd *wire.Command, _ int64) {
	t := l.table()
	switch {
	case t == nil:
		l.replyErr(cl, wire.ErrCodeBadArg, "no entitlements on this child: AUTH is not needed")
		return
	case cl.identity != "":
		l.replyErr(cl, wire.ErrCodeBadArg, "already authenticated")
		return
	}
	e, ok := t.Lookup(cmd.Token)
	if !ok {
		l.writeOut(cl)
		l.writeErr(cl, wire.ErrCodeAuth, "unknown token")
		return
	}
	cl.authed, cl.identity, cl.key = true, e.Identity, entitle.KeyOf(cmd.Token)
	cl.grant = grantOf(e.Grant)
	if l.m.Authenticated != nil {
		l.m.Authenticated.Inc()
	}
	cl.out = append(append(append(cl.out, "OK "+wire.CmdAuth+" "...), e.Identity...), '\n')
}

// grantOf is the grant a client holds: nil for everything, so the fan-out
// checks one pointer for the clients that may see all.
func grantOf(g *entitle.Grant) *entitle.Grant {
	if g.Everything() {
		return nil
	}
	return g
}

// Identity is the identity cl authenticated as ("" before AUTH, or with
// no entitlements).
func (cl *Client) Identity() string { return cl.identity }

// authTimeouts closes the clients that did not AUTH in time.
func (l *Loop) authTimeouts() {
	now := l.cfg.Now()
	i := 0
	for ; i < len(l.unauthed); i++ {
		cl := l.unauthed[i]
		if cl.authed || cl.conn == nil {
			continue
		}
		if now-cl.openedAt < int64(l.cfg.AuthTimeout) {
			break
		}
		l.writeErr(cl, wire.ErrCodeAuth, fmt.Sprintf("no AUTH within %v", l.cfg.AuthTimeout))
		l.closeNow(cl)
	}
	clear(l.unauthed[:i])
	l.unauthed = l.unauthed[i:]
}

// deny answers ERR DENIED sym [why].
func (l *Loop) deny(cl *Client, sym []byte, why string) {
	l.m.Denied.Inc()
	reason := string(frames.CanonicalSymbol(nil, sym))
	if why != "" {
		reason += " " + why
	}
	l.replyErr(cl, wire.ErrCodeDenied, reason)
}

// Reentitle applies the table in force now to every authenticated client:
// a named subscription it no longer covers ends with ERR DENIED sym, and
// on "*" each symbol of the feed the old grant covered and the new one
// does not is answered so; frames of them stop here. A token no longer in
// the table covers nothing.
func (l *Loop) Reentitle() {
	t := l.table()
	if t == nil {
		return
	}
	var codes []uint32
	for cl := range l.clients {
		if cl.identity == "" || cl.dead {
			continue
		}
		g := entitle.None
		if e, ok := t.LookupKey(cl.key); ok {
			g, cl.identity = e.Grant, e.Identity
		}
		old := cl.grant
		cl.grant = grantOf(g)
		for h, sym := range cl.subs {
			if !cl.grant.AllowsSymbol(sym) {
				l.f.unsubscribe(cl, h, false)
				l.deny(cl, sym, "revoked")
			}
		}
		if cl.all {
			if codes == nil {
				l.src.Read(func(c *frames.Core) { codes = slices.Clone(c.Codes()) })
			}
			for _, code := range codes {
				if old.Allows(code) && !cl.grant.Allows(code) {
					l.deny(cl, wire.AppendSymbol(nil, code), "revoked")
				}
			}
		}
		l.writeOut(cl)
	}
}
