package session

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"tickrelay/child/frames"
	"tickrelay/control"
	"tickrelay/wire"
)

// Queue groups: "SUB sym... GROUP name [rr]" makes the client a member of
// a group that spans every child; each item of the group's symbols goes to
// one member (control.Groups.Owner). A join or leave goes to the root
// (Config.Submit), which sequences it into the relay stream; every loop of
// every child applies it, to its own replica, at the same place, so no
// item goes to two members or to none. The member's "OK GROUP name member
// seq epoch" comes when its join takes effect here: it gets its share of
// every item after seq.
//
// A member that closes (or UNSUBs, or is cut) stops getting frames at
// once. Without ack, the items the group still gives it until its leave
// takes effect are lost, and counted (GroupLost): at-most-once. With ack,
// the new owners get what it had not acknowledged (REDELIVER), and a
// member with an identity keeps its place for the root's linger:
// at-least-once, the copies marked. A member
// behind on its socket catches up from the history by the replica as it
// is: exact while the group is unchanged, so a change to its group while
// it is behind cuts it.

// MaxGroupsPerClient bounds the groups one client may join (ERR LIMIT).
const MaxGroupsPerClient = 16

// membership is one group a client is in (or asked to join).
type membership struct {
	group  string
	member string
	conn   uint64     // which of the member's connections (control.Op.Conn)
	active bool       // its join took effect: frames flow
	join   control.Op // what it submitted (again in a new era)
	after  uint64     // the position its join took effect after
	from   uint64     // the position it answers for its items after (ACK): after, or where a REDELIVER began
}

// groupState is a loop's share of the queue groups.
type groupState struct {
	replica *control.Groups
	// local: the members on this loop that take frames, by group; gone:
	// members that left here whose leave has not taken effect (their items
	// are lost); pending: joins submitted, by group and member.
	local   map[string]map[string]*Client
	gone    map[string]map[string]bool
	pending map[groupMember]*Client
	next    uint64                 // counts memberships: control.Op.Conn, and names without an identity ("~", Config.Origin, "." and it)
	counts  map[string]*groupCount // since the last flush, by group
}

// groupMember names a member of a group.
type groupMember struct{ group, member string }

// groupCount is what a loop did for a group since its last flush, and
// the group's counters (looked up once: a lookup allocates).
type groupCount struct {
	out, lost   uint64
	outC, lostC prometheus.Counter
}

// count returns the group's counts, made on first use.
func (g *groupState) count(name string) *groupCount {
	c := g.counts[name]
	if c == nil {
		c = &groupCount{}
		g.counts[name] = c
	}
	return c
}

// flushCounts adds the counts to m.
func (g *groupState) flushCounts(m *Metrics) {
	for name, c := range g.counts {
		if c.outC == nil {
			c.outC, c.lostC = m.GroupOut.WithLabelValues(name), m.GroupLost.WithLabelValues(name)
		}
		c.outC.Add(float64(c.out))
		c.lostC.Add(float64(c.lost))
		c.out, c.lost = 0, 0
	}
}

// members moves the group's members-here gauge by d.
func (l *Loop) members(name string, d float64) {
	if l.m.GroupMembers != nil {
		l.m.GroupMembers.WithLabelValues(name).Add(d)
	}
}

func newGroupState() *groupState {
	return &groupState{replica: control.NewGroups(), local: map[string]map[string]*Client{},
		gone: map[string]map[string]bool{}, pending: map[groupMember]*Client{}, counts: map[string]*groupCount{}}
}

// subGroup runs SUB sym... GROUP name [rr].
func subGroup(l *Loop, cl *Client, cmd *wire.Command) {
	name := string(cmd.Group)
	switch {
	case !control.ValidName(name):
		l.replyErr(cl, wire.ErrCodeBadArg, fmt.Sprintf("bad group name %.20q: 1..%d of A-Z a-z 0-9 . _ : / -", name, control.MaxName))
		return
	case l.cfg.Submit == nil:
		l.replyErr(cl, wire.ErrCodeBadArg, "queue groups need a sequencing root")
		return
	}
	var m *membership
	for _, x := range cl.groups {
		if x.group == name {
			m = x
		}
	}
	if m == nil && len(cl.groups) >= MaxGroupsPerClient {
		l.replyErr(cl, wire.ErrCodeLimit, fmt.Sprintf("at most %d groups per client", MaxGroupsPerClient))
		return
	}
	if m == nil {
		g := l.groups
		g.next++
		m = &membership{group: name, member: memberIdentity(cl), conn: g.next}
		if m.member == "" {
			m.member = "~" + l.cfg.Origin + "." + strconv.FormatUint(g.next, 10)
		}
	}
	op := control.Op{Kind: control.KindJoin, Group: name, Member: m.member, Origin: l.cfg.Origin, Conn: m.conn,
		Static: !strings.HasPrefix(m.member, "~"), Ack: cmd.GroupAck}
	if cmd.GroupRR {
		op.Mode = control.RoundRobin
	}
	for _, sym := range cmd.Symbols {
		if isAll(sym) {
			op.All = true
		} else if code, ok := wire.ParseSymbol(sym); ok {
			op.Syms = append(op.Syms, code)
		}
	}
	if err := l.cfg.Submit(op); err != nil {
		l.refuse(cl, time.Second)
		return
	}
	m.join = op
	if !containsMembership(cl.groups, m) {
		cl.groups = append(cl.groups, m)
	}
	l.groups.pending[groupMember{m.group, m.member}] = cl
}

// memberIdentity is the member name cl joins groups by: its identity
// (HELLO's, else its token's), so that it keeps its place when it comes
// back on any child; "" without one.
func memberIdentity(cl *Client) string {
	if cl.owner != "" {
		return cl.owner
	}
	return cl.identity
}

func containsMembership(ms []*membership, m *membership) bool {
	for _, x := range ms {
		if x == m {
			return true
		}
	}
	return false
}

// unsubGroup runs UNSUB ... GROUP name: the client leaves the group.
func unsubGroup(l *Loop, cl *Client, cmd *wire.Command) {
	name := string(cmd.Group)
	for i, m := range cl.groups {
		if m.group == name {
			l.leaveGroup(cl, m, false)
			cl.groups = append(cl.groups[:i], cl.groups[i+1:]...)
			cl.out = append(append(cl.out, "OK UNSUB GROUP "...), name...)
			cl.out = append(cl.out, '\n')
			return
		}
	}
	l.replyErr(cl, wire.ErrCodeBadArg, fmt.Sprintf("not in group %.20q", name))
}

// leaveGroup stops cl's frames of m at once and submits its leave;
// closing (not UNSUB) lets a member with an identity keep its place for a
// while (control.Sequencer.Linger).
func (l *Loop) leaveGroup(cl *Client, m *membership, closing bool) {
	g := l.groups
	if k := (groupMember{m.group, m.member}); g.pending[k] == cl {
		delete(g.pending, k)
	}
	l.dropLocal(cl, m)
	if g.gone[m.group] == nil {
		g.gone[m.group] = map[string]bool{}
	}
	g.gone[m.group][m.member] = true
	leave := control.Op{Kind: control.KindLeave, Group: m.group, Member: m.member, Origin: l.cfg.Origin, Conn: m.conn, Linger: closing}
	if m.join.Ack {
		leave.Acked = max(wire.Pos(l.epoch, cl.acked), m.from) // what it handled: the rest goes again
	}
	if l.cfg.Submit != nil {
		l.cfg.Submit(leave) // a dropped line leaves it too
	}
}

// leaveGroups is every membership of a closing client leaving.
func (l *Loop) leaveGroups(cl *Client) {
	for _, m := range cl.groups {
		l.leaveGroup(cl, m, true)
	}
	cl.groups = nil
}

// dropLocal stops m's frames to cl here (if it takes them).
func (l *Loop) dropLocal(cl *Client, m *membership) {
	g := l.groups
	if members := g.local[m.group]; members[m.member] == cl {
		delete(members, m.member)
		l.members(m.group, -1)
		if len(members) == 0 {
			delete(g.local, m.group)
		}
	}
	m.active = false
}

// applyControl takes a control marker: the replica moves on, a local
// member whose join took effect starts (OK GROUP), a leave forgets a gone
// one, and members behind on a group that changed are cut.
func (l *Loop) applyControl(mk *frames.ControlMark, last uint64) {
	g := l.groups
	if mk.Snapshot {
		newEra := mk.Record.Era != g.replica.Era() && g.replica.Era() != 0
		g.replica.Load(mk.Record.Era, mk.Record.Serial, mk.Live)
		for _, r := range mk.Live {
			l.joined(r.Op, r.After)
		}
		if newEra {
			l.rejoin()
		}
		l.alertSnapshot()
		return
	}
	op := mk.Record.Op
	if op.Kind.IsAlert() {
		if applied, err := g.replica.Apply(mk.Record); err == nil && applied {
			l.alertRecord(mk.Record)
		}
		return
	}
	// A record that reaches this loop after items past its place (root B
	// ran ahead of the sequencing root A) is late: applied at once.
	at := wire.Pos(l.epoch, last)
	late := wire.PosEpoch(at) == wire.PosEpoch(mk.Record.After) && at > mk.Record.After
	var before *control.Groups // an ack member leaving, back in its place, or a late record: who owned what until now
	if late || op.Kind == control.KindLeave && g.replica.Acks(op.Group, op.Member) || op.Kind == control.KindJoin && op.Acked != 0 {
		before = g.replica.Clone()
	}
	if applied, err := g.replica.Apply(mk.Record); err != nil || !applied {
		return // the relay checked it: a repeat
	}
	switch op.Kind {
	case control.KindJoin:
		if cl := l.joined(op, mk.Record.After); cl != nil && before != nil {
			l.redeliver(before, op, mk.Record.After, cl)
		}
	case control.KindLeave:
		if before != nil {
			l.redeliver(before, op, mk.Record.After, nil)
		}
	}
	if late {
		l.giveLate(before, op.Group, mk.Record.After, at)
	}
	if gone := g.gone[op.Group]; gone[op.Member] { // left, or back: its leave here is settled
		delete(gone, op.Member)
		if len(gone) == 0 {
			delete(g.gone, op.Group)
		}
	}
	now := l.cfg.Now()
	for _, cl := range g.local[op.Group] {
		if cl.behind {
			l.cut(cl, now, "a queue-group member fell behind while its group changed")
		}
	}
}

// rejoin submits again the joins of the local members: the sequencing
// root restarted (a new era) and knows none of them. Until each join takes
// effect again the member gets nothing, and the group gives its items to
// the members it knows.
func (l *Loop) rejoin() {
	g := l.groups
	for cl := range l.clients {
		for _, m := range cl.groups {
			l.dropLocal(cl, m)
			if l.cfg.Submit(m.join) == nil {
				g.pending[groupMember{m.group, m.member}] = cl
			}
		}
	}
}

// joined starts the local member whose join (from this loop) took effect
// after position after, and returns it: it gets its share of the items
// after it. A join from elsewhere of a member a client here holds moves
// it away: that client is told ERR MOVED and gets no more of its share.
func (l *Loop) joined(op control.Op, after uint64) *Client {
	g := l.groups
	if op.Origin != l.cfg.Origin {
		l.movedAway(op)
		return nil
	}
	k := groupMember{op.Group, op.Member}
	cl := g.pending[k]
	if cl == nil || cl.dead {
		return nil
	}
	delete(g.pending, k)
	if old := g.local[op.Group][op.Member]; old != nil && old != cl {
		l.displace(old, op.Group)
	}
	for _, m := range cl.groups {
		if m.group == op.Group && m.member == op.Member {
			// It answers for its items from its place on, or, back in
			// its place, from where they are sent again (redeliver).
			m.active, m.after, m.from = true, after, after
			if op.Acked != 0 && wire.PosEpoch(op.Acked) == wire.PosEpoch(after) && op.Acked < after {
				m.from = op.Acked
			}
		}
	}
	if g.local[op.Group] == nil {
		g.local[op.Group] = map[string]*Client{}
	}
	g.local[op.Group][op.Member] = cl
	l.members(op.Group, 1)
	p := wire.PosSeq(after)
	cl.out = append(cl.out[:0], "OK GROUP "...)
	cl.out = append(append(append(cl.out, op.Group...), ' '), op.Member...)
	cl.out = append(append(cl.out, ' '), strconv.FormatUint(p, 10)...)
	cl.out = append(append(cl.out, ' '), strconv.FormatUint(uint64(l.epoch), 10)...)
	cl.out = append(cl.out, '\n')
	l.writeOut(cl)
	return cl
}

// movedAway ends the membership of the client here that holds op's
// member, which joined elsewhere.
func (l *Loop) movedAway(op control.Op) {
	if cl := l.groups.local[op.Group][op.Member]; cl != nil {
		l.displace(cl, op.Group) // a join of it pending here comes later, and moves it back
	}
}

// displace ends cl's membership of group: the member joined on another
// connection. Its leave is not submitted (the member lives on there).
func (l *Loop) displace(cl *Client, group string) {
	for i, m := range cl.groups {
		if m.group != group {
			continue
		}
		l.dropLocal(cl, m)
		cl.groups = append(cl.groups[:i], cl.groups[i+1:]...)
		l.replyErr(cl, wire.ErrCodeMoved, fmt.Sprintf("group %.64s: the member joined on another connection", group))
		l.writeOut(cl)
		return
	}
}

// groupDeliveries hands a frame (seq, symbol code) to the local members
// that own it, and counts the items owned by members gone from here.
func (f *fanout) groupDeliveries(g *groupState, seq uint64, code uint32, off, end int32) {
	for name, members := range g.local {
		owner, ok := g.replica.Owner(name, code, seq)
		if !ok {
			continue
		}
		if cl := members[owner]; cl != nil && !cl.dead {
			f.deliver(cl, off, end)
			g.count(name).out++
			cl.groupSent = max(cl.groupSent, seq)
		} else if (cl != nil || g.gone[name][owner]) && !g.replica.Acks(name, owner) {
			g.count(name).lost++ // an ack member's go again when its leave takes effect
		}
	}
	for name, gone := range g.gone {
		if _, local := g.local[name]; local || len(gone) == 0 {
			continue // counted above
		}
		if owner, ok := g.replica.Owner(name, code, seq); ok && gone[owner] && !g.replica.Acks(name, owner) {
			g.count(name).lost++
		}
	}
}

// ownsFrame reports whether cl owns a held frame through a group (for
// its catch-up from the history).
func (f *fanout) ownsFrame(cl *Client, seq uint64, frame []byte) bool {
	code, ok := wire.TextFrameCode(frame)
	if !ok {
		return false
	}
	for _, m := range cl.groups {
		if !m.active {
			continue
		}
		if owner, ok := f.groups.replica.Owner(m.group, code, seq); ok && owner == m.member {
			return true
		}
	}
	return false
}

// LoadGroups sets the loop's group replica (a new loop takes the child's).
func (l *Loop) LoadGroups(g *control.Groups) { l.groups.replica = g }

// ackCmd runs ACK seq: an ack member has handled every item up to seq.
func ackCmd(l *Loop, cl *Client, cmd *wire.Command, _ int64) {
	ack := false
	for _, m := range cl.groups {
		ack = ack || m.join.Ack
	}
	switch {
	case !ack:
		l.replyErr(cl, wire.ErrCodeBadArg, "ACK without a GROUP ... ack membership")
	case cmd.Seq > cl.groupSent:
		l.replyErr(cl, wire.ErrCodeBadArg, fmt.Sprintf("ACK of seq %d, which was never delivered (last %d)", cmd.Seq, cl.groupSent))
	case cmd.Seq < cl.acked:
		l.replyErr(cl, wire.ErrCodeBadArg, fmt.Sprintf("ACK going backwards: %d after %d", cmd.Seq, cl.acked))
	default:
		cl.acked = cmd.Seq
	}
}

// redeliver sends each local member of op's group the items the leaving
// ack member owned after its last ACK (op.Acked) up to where its leave
// took effect (after) that the member now owns. For a member back in its
// place (a join with Acked), only back, that member here, gets them.
func (l *Loop) redeliver(before *control.Groups, op control.Op, after uint64, back *Client) {
	members := l.groups.local[op.Group]
	if back != nil {
		members = map[string]*Client{op.Member: back}
	}
	l.resend(op.Group, op.Acked, after, members, before, func(was, now, name string) bool {
		return was == op.Member && now == name
	})
}

// giveLate sends each local member of group the items between a late
// record's place (after) and where this loop applied it (at) that the
// record gave it: the other children gave them by the record, so the new
// owners are not short of them here (the old owners had them too: at
// least once across the change).
func (l *Loop) giveLate(before *control.Groups, group string, after, at uint64) {
	l.resend(group, after, at, l.groups.local[group], before, func(was, now, name string) bool {
		return was != name && now == name
	})
}

// resend sends each member (name) the items of group in positions
// (from, to] whose owners, was (by before) and now (by the replica), want
// takes, from the history, after a "REDELIVER group n" line; live items
// after that follow as usual.
func (l *Loop) resend(group string, from, to uint64, members map[string]*Client, before *control.Groups, want func(was, now, name string) bool) {
	if len(members) == 0 || wire.PosEpoch(from) != wire.PosEpoch(to) || from >= to {
		return
	}
	first, last := wire.PosSeq(from)+1, wire.PosSeq(to)
	for name, cl := range members {
		if cl.dead {
			continue
		}
		take := func(seq, _ uint64, frame []byte) bool {
			if seq > last {
				return false
			}
			code, ok := wire.TextFrameCode(frame)
			if !ok {
				return false
			}
			was, _ := before.Owner(group, code, seq)
			now, _ := l.groups.replica.Owner(group, code, seq)
			return want(was, now, name)
		}
		var out []byte
		l.src.Read(func(c *frames.Core) {
			start := max(first, c.OldestSeq())
			if start > first {
				l.cfg.Log.Warn("queue group: the history no longer holds all the items to send again", "group", group, "member", name, "from", first, "oldest", start)
			}
			out, _, _ = c.AppendHistoryWhere(nil, start, l.cfg.Now(), int(last-start+1), math.MaxInt, take)
		})
		n := bytes.Count(out, []byte{'\n'})
		if n == 0 {
			continue
		}
		l.m.GroupRedelivered.WithLabelValues(group).Add(float64(n))
		cl.out = append(cl.out[:0], "REDELIVER "...)
		cl.out = append(append(append(cl.out, group...), ' '), strconv.Itoa(n)...)
		cl.out = append(append(cl.out, '\n'), out...)
		cl.groupSent = max(cl.groupSent, last)
		l.writeOut(cl)
	}
}
