package cluster

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"tickrelay/alert"
	"tickrelay/child/client"
	"tickrelay/wire"
)

// Group is a queue-group membership: the client is one member of Name,
// named by its identity (Config.ID, or its token's), so that when it
// moves to another child it keeps its place: the same symbols (by
// symbol) and, with Ack, the items it had not acknowledged.
type Group struct {
	Name string
	RR   bool // round-robin: item by item, not by symbol
	Ack  bool // the caller ACKs (Client.Ack); a move redelivers what it had not
}

// groupSub is the client's membership and its per-connection state.
type groupSub struct {
	Group
	syms []string
	// joined: the caller had its OK GROUP; a move's OK GROUP is not
	// offered again. sent: the highest seq of a group frame on this
	// connection (an ACK may not pass it); acked: the last ACK sent on
	// it; want: the caller's last Ack.
	joined      bool
	sent, acked uint64
	want        uint64
	hellos      int // OK HELLO replies still to come (ours, not the caller's)
}

// SubGroup joins the queue group g for syms ("*" for all): OK GROUP,
// then the client's share of their items. A Client is a plain subscriber
// or one group's member, not both. Across moves each symbol's items come
// in seq order with no duplicate; with g.Ack none is lost either (a
// REDELIVER after a move is folded in: Stats.Redelivered counts it).
func (cl *Client) SubGroup(g Group, syms ...string) error {
	switch {
	case len(cl.subs) > 0:
		return errors.New("cluster: a client is a plain subscriber or a group member, not both")
	case cl.group != nil && cl.group.Name != g.Name:
		return fmt.Errorf("cluster: already a member of group %q", cl.group.Name)
	case cl.group != nil && (cl.group.RR != g.RR || cl.group.Ack != g.Ack):
		return fmt.Errorf("cluster: group %q joined with other options", g.Name)
	case cl.cfg.Token == "" && !alert.ValidName(cl.cfg.ID, alert.MaxOwner):
		return fmt.Errorf("cluster: id %.80q cannot name a group member: 1..%d of A-Z a-z 0-9 . _ : / -", cl.cfg.ID, alert.MaxOwner)
	}
	syms = canonical(syms)
	first := cl.group == nil
	if first {
		cl.group = &groupSub{Group: g}
	}
	cl.group.syms = append(cl.group.syms, syms...)
	if cl.c == nil {
		return nil // the next child gets it
	}
	if first {
		if err := cl.hello(); err != nil {
			return err
		}
	}
	return cl.c.SendLine(cl.group.subLine(syms))
}

// Ack acknowledges every item up to seq (ack groups): forwarded to the
// child as far as it delivered on this connection (the rest with the
// next frame).
func (cl *Client) Ack(seq uint64) error {
	g := cl.group
	if g == nil || !g.Ack {
		return errors.New("cluster: Ack without a Group with Ack")
	}
	g.want = max(g.want, seq)
	return cl.flushAck()
}

func (cl *Client) flushAck() error {
	g := cl.group
	if s := min(g.want, g.sent); s > g.acked && cl.c != nil {
		g.acked = s
		return cl.c.SendLine(wire.CmdAck + " " + strconv.FormatUint(s, 10))
	}
	return nil
}

// hello names the member on this connection (a token names it without).
func (cl *Client) hello() error {
	if cl.cfg.Token != "" {
		return nil
	}
	cl.group.hellos++
	return cl.c.SendLine(wire.CmdHello + " " + cl.cfg.ID)
}

func (g *groupSub) subLine(syms []string) string {
	line := wire.CmdSub + " " + strings.Join(syms, " ") + " " + wire.KeywordGroup + " " + g.Name
	if g.RR {
		line += " rr"
	}
	if g.Ack {
		line += " ack"
	}
	return line
}

// rejoin joins the group on a new connection: the child sequences it as
// the same member, back in its place.
func (cl *Client) rejoin() error {
	g := cl.group
	g.sent, g.acked = 0, 0
	if err := cl.hello(); err != nil {
		return err
	}
	return cl.c.SendLine(g.subLine(g.syms))
}

// groupFrame delivers a group frame unless this member had it already
// (redelivered after a move: the old child sent it before the ACK).
func (cl *Client) groupFrame(ev *client.Event) bool {
	g := cl.group
	g.sent = max(g.sent, ev.Seq)
	if g.want > g.acked && cl.flushAck() != nil {
		cl.lost(ReasonDead, "")
	}
	sym := ev.Msg.Security
	if ev.Seq <= cl.covered[sym] {
		cl.stats.Duplicates++
		return false
	}
	cl.covered[sym] = ev.Seq
	return true
}

// groupLine takes the group's own lines: OK GROUP (the caller's first;
// a move's completes the move), OK HELLO and REDELIVER (folded in).
// handled false: not a group line.
func (cl *Client) groupLine(ev *client.Event) (handled, out bool) {
	if ev.Kind != wire.LineOK && ev.Kind != wire.LineRedeliver {
		return false, false // frames above all: no split per frame
	}
	g := cl.group
	f := strings.Fields(string(ev.Line))
	switch {
	case ev.Kind == wire.LineRedeliver && len(f) == 3:
		n, _ := strconv.Atoi(f[2])
		cl.stats.Redelivered += n
		return true, false
	case ev.Kind != wire.LineOK || len(f) < 2:
		return false, false
	case f[1] == wire.CmdHello && g.hellos > 0:
		g.hellos--
		return true, false
	case f[1] == wire.KeywordGroup && len(f) == 6:
		if e, err := strconv.ParseUint(f[5], 10, 32); err == nil {
			cl.epoch = uint32(e)
		}
		if cl.moving != nil {
			cl.moved()
		}
		out, g.joined = !g.joined, true
		return true, out
	}
	return false, false
}
