package session

import (
	"fmt"
	"strconv"
	"time"

	"tickrelay/alert"
	"tickrelay/control"
	"tickrelay/wire"
)

// Price alerts (package alert). An alert belongs to an identity, not to a
// connection: the one a client names with "HELLO id", or where
// entitlements apply, the identity of its token. ALERT and UNALERT go to
// the sequencing root (Config.Submit), whose engine matches every update
// and sequences each fire into the relay stream after the item that
// reached the alert; every child applies the same records to its replica
// (Config.Alerts), so an identity's alerts and last fires are the same on
// every child, and a client that comes back anywhere says the number of
// the last FIRED it saw and gets the ones after it:
//
//	HELLO id [n]          -> OK HELLO id last  (then the FIRED lines after n)
//	ALERT id sym field op value [repeat hyst] -> OK ALERT id seq epoch
//	UNALERT id            -> OK UNALERT id
//	ALERTS                -> ALERT id sym field op value [repeat hyst] [waiting] ... OK ALERTS count
//	                         FIRED id seq sym field=value t=ns n=k
//
// OK ALERT comes once the alert stands, as of seq: it fires at the first
// update of its field after seq that reaches its value.
type alertState struct {
	owners map[string][]*Client // local clients by alert identity
}

// Wait kinds of Client.alertWait: the reply due when a record comes back.
const (
	waitAlert   = 1
	waitUnalert = 2
)

func newAlertState() *alertState { return &alertState{owners: map[string][]*Client{}} }

// readAlerts runs fn on the child's replica, read locked; false when the
// child serves no alerts.
func (l *Loop) readAlerts(fn func(s *alert.Set)) bool {
	if l.cfg.Alerts == nil || l.cfg.Submit == nil {
		return false
	}
	l.cfg.Alerts(fn)
	return true
}

// hello runs HELLO id [n].
func hello(l *Loop, cl *Client, cmd *wire.Command, _ int64) {
	id := string(cmd.Args[0])
	var after uint64
	since := len(cmd.Args) == 2
	if since {
		n, err := strconv.ParseUint(string(cmd.Args[1]), 10, 64)
		if err != nil {
			l.replyErr(cl, wire.ErrCodeBadArg, fmt.Sprintf("HELLO fire number %.20q is not an integer", cmd.Args[1]))
			return
		}
		after = n
	}
	switch {
	case !alert.ValidName(id, alert.MaxOwner):
		l.replyErr(cl, wire.ErrCodeBadArg, fmt.Sprintf("bad identity %.20q: 1..%d of A-Z a-z 0-9 . _ : / -", id, alert.MaxOwner))
		return
	case cl.identity != "" && id != cl.identity:
		l.replyErr(cl, wire.ErrCodeDenied, "HELLO names another identity than the token's")
		return
	case cl.owner != "" && id != cl.owner:
		l.replyErr(cl, wire.ErrCodeBadArg, "HELLO already named "+cl.owner)
		return
	}
	var last uint64
	var missed []alert.Fired
	var lost bool
	if !l.readAlerts(func(s *alert.Set) {
		last = s.LastFire(id)
		if since {
			lost = s.FiredAfter(id, after, func(f alert.Fired) { missed = append(missed, f) })
		}
	}) {
		l.replyErr(cl, wire.ErrCodeBadArg, "alerts need a sequencing root")
		return
	}
	l.own(cl, id)
	if since {
		// It has seen up to after: a replica still behind (a child just
		// started) gives the rest as its records or snapshot come.
		last = max(last, after)
		for _, f := range missed {
			last = max(last, f.N)
		}
	}
	cl.firedN = max(last, cl.firedN)
	cl.out = append(append(append(cl.out, "OK "+wire.CmdHello+" "...), id...), ' ')
	cl.out = append(strconv.AppendUint(cl.out, last, 10), '\n')
	if lost {
		l.m.ClientErrors.WithLabelValues(wire.ErrCodeGone).Inc()
		cl.out = wire.AppendErr(cl.out, wire.ErrCodeGone, fmt.Sprintf("fires after %d are no longer all kept (the last %d are)", after, control.FiresKept))
	}
	for i := range missed {
		cl.out = appendFired(cl.out, &missed[i])
	}
}

// own makes cl a local client of identity id (once).
func (l *Loop) own(cl *Client, id string) {
	if cl.owner == id {
		return
	}
	cl.owner = id
	l.alerts.owners[id] = append(l.alerts.owners[id], cl)
}

// ownerOf is cl's alert identity: HELLO's, else its token's; "" with an
// error sent when it has none.
func (l *Loop) ownerOf(cl *Client) string {
	if cl.owner == "" && cl.identity != "" {
		l.own(cl, cl.identity)
		l.readAlerts(func(s *alert.Set) { cl.firedN = s.LastFire(cl.identity) })
	}
	if cl.owner == "" {
		l.replyErr(cl, wire.ErrCodeBadArg, "alerts belong to an identity: HELLO id first")
	}
	return cl.owner
}

// alertCmd runs ALERT id sym field op value [repeat hyst].
func alertCmd(l *Loop, cl *Client, cmd *wire.Command, _ int64) {
	d, symText, err := alert.Parse(cmd.Args)
	if err != nil {
		l.replyErr(cl, wire.ErrCodeBadArg, shortReason(err))
		return
	}
	code, ok := wire.ParseSymbol(symText)
	if !ok || !wire.ValidSymbol(symText) {
		l.replyErr(cl, wire.ErrCodeBadArg, fmt.Sprintf("bad symbol %.20q", symText))
		return
	}
	if d.Owner = l.ownerOf(cl); d.Owner == "" {
		return
	}
	if !cl.grant.Allows(code) {
		l.m.ClientErrors.WithLabelValues(wire.ErrCodeDenied).Inc()
		cl.out = wire.AppendErr(cl.out, wire.ErrCodeDenied, string(symText))
		return
	}
	d.Sym = code
	var inUse bool
	var n int
	if !l.readAlerts(func(s *alert.Set) { _, _, inUse = s.Get(d.Owner, d.ID); n = s.Count(d.Owner) }) {
		l.replyErr(cl, wire.ErrCodeBadArg, "alerts need a sequencing root")
		return
	}
	switch {
	case inUse || cl.alertWait[d.ID] != 0:
		l.replyErr(cl, wire.ErrCodeBadArg, "alert id "+d.ID+" is in use")
		return
	case l.cfg.MaxAlerts > 0 && n+len(cl.alertWait) >= l.cfg.MaxAlerts:
		l.m.ClientErrors.WithLabelValues(wire.ErrCodeLimit).Inc()
		cl.out = wire.AppendErr(cl.out, wire.ErrCodeLimit, fmt.Sprintf("%d alerts is the most an identity may hold", l.cfg.MaxAlerts))
		return
	}
	l.submitAlert(cl, control.Op{Kind: control.KindAlert, Alert: d}, waitAlert)
}

// unalert runs UNALERT id.
func unalert(l *Loop, cl *Client, cmd *wire.Command, _ int64) {
	id := string(cmd.Args[0])
	owner := l.ownerOf(cl)
	if owner == "" {
		return
	}
	var ok bool
	if !l.readAlerts(func(s *alert.Set) { _, _, ok = s.Get(owner, id) }) {
		l.replyErr(cl, wire.ErrCodeBadArg, "alerts need a sequencing root")
		return
	}
	if !ok || cl.alertWait[id] != 0 {
		l.replyErr(cl, wire.ErrCodeBadArg, fmt.Sprintf("no alert %.40q", id))
		return
	}
	l.submitAlert(cl, control.Op{Kind: control.KindUnalert, Alert: alert.Def{Owner: owner, ID: id}}, waitUnalert)
}

func (l *Loop) submitAlert(cl *Client, op control.Op, wait byte) {
	if err := l.cfg.Submit(op); err != nil {
		l.refuse(cl, time.Second)
		return
	}
	if cl.alertWait == nil {
		cl.alertWait = map[string]byte{}
	}
	cl.alertWait[op.Alert.ID] = wait
}

// alertsCmd runs ALERTS: the identity's standing alerts.
func alertsCmd(l *Loop, cl *Client, _ *wire.Command, _ int64) {
	owner := l.ownerOf(cl)
	if owner == "" {
		return
	}
	n := 0
	var sym []byte
	l.readAlerts(func(s *alert.Set) {
		s.Alerts(owner, func(d alert.Def, armed bool) {
			n++
			sym = wire.AppendSymbol(sym[:0], d.Sym)
			cl.out = alert.AppendDef(append(cl.out, "ALERT "...), &d, sym)
			if !armed {
				cl.out = append(cl.out, " waiting"...)
			}
			cl.out = append(cl.out, '\n')
		})
	})
	cl.out = append(strconv.AppendInt(append(cl.out, "OK ALERTS "...), int64(n), 10), '\n')
}

// appendFired appends f's FIRED line.
func appendFired(dst []byte, f *alert.Fired) []byte {
	var sym [12]byte
	return alert.AppendFired(dst, f, wire.AppendSymbol(sym[:0], f.Sym))
}

// alertRecord takes an alert record in its place in the stream: the reply
// its client waits for, or a FIRED line for the owner's local clients.
func (l *Loop) alertRecord(r control.Record) {
	op := &r.Op
	for _, cl := range l.alerts.owners[op.Alert.Owner] {
		if cl.dead {
			continue
		}
		switch op.Kind {
		case control.KindAlert, control.KindUnalert:
			want := byte(waitAlert)
			if op.Kind == control.KindUnalert {
				want = waitUnalert
			}
			if cl.alertWait[op.Alert.ID] != want {
				continue
			}
			delete(cl.alertWait, op.Alert.ID)
			if want == waitAlert {
				cl.out = appendOKAlert(cl.out[:0], op.Alert.ID, r.After)
			} else {
				cl.out = append(append(append(cl.out[:0], "OK UNALERT "...), op.Alert.ID...), '\n')
			}
		case control.KindFired:
			if op.Fired.N <= cl.firedN {
				continue // HELLO gave it already
			}
			cl.firedN = op.Fired.N
			cl.out = appendFired(cl.out[:0], &op.Fired)
			if l.m.AlertsFired != nil {
				l.m.AlertsFired.Inc()
			}
		default:
			continue
		}
		l.writeOut(cl)
	}
}

// alertSnapshot: the replica was loaded anew (the root restarted, or this
// child fell too far behind the control stream): each local identity gets
// the fires after its last, and the ALERT and UNALERT waiting for records
// the snapshot took in are answered.
func (l *Loop) alertSnapshot() {
	for id, cls := range l.alerts.owners {
		for _, cl := range cls {
			if cl.dead {
				continue
			}
			cl.out = cl.out[:0]
			l.readAlerts(func(s *alert.Set) {
				var fired map[string]uint64 // id -> After of its last kept fire
				s.FiredAfter(id, 0, func(f alert.Fired) {
					if cl.alertWait[f.ID] == waitAlert {
						if fired == nil {
							fired = map[string]uint64{}
						}
						fired[f.ID] = f.After
					}
				})
				for aid, wait := range cl.alertWait {
					d, _, ok := s.Get(id, aid)
					switch {
					case wait == waitAlert && ok:
						cl.out = appendOKAlert(cl.out, aid, d.After)
					case wait == waitAlert && fired[aid] != 0: // it stood, fired and went before the snapshot
						cl.out = appendOKAlert(cl.out, aid, fired[aid])
					case wait == waitUnalert && !ok:
						cl.out = append(append(append(cl.out, "OK UNALERT "...), aid...), '\n')
					default:
						continue
					}
					delete(cl.alertWait, aid)
				}
				s.FiredAfter(id, cl.firedN, func(f alert.Fired) {
					cl.out = appendFired(cl.out, &f)
					cl.firedN = f.N
				})
			})
			l.writeOut(cl)
		}
	}
}

func appendOKAlert(dst []byte, id string, after uint64) []byte {
	dst = append(append(dst, "OK ALERT "...), id...)
	dst = strconv.AppendUint(append(dst, ' '), wire.PosSeq(after), 10)
	dst = strconv.AppendUint(append(dst, ' '), uint64(wire.PosEpoch(after)), 10)
	return append(dst, '\n')
}

// leaveAlerts forgets a closed client (its alerts stay: they are its
// identity's).
func (l *Loop) leaveAlerts(cl *Client) {
	if cl.owner == "" {
		return
	}
	cls := l.alerts.owners[cl.owner]
	for i, c := range cls {
		if c == cl {
			cls = append(cls[:i], cls[i+1:]...)
			break
		}
	}
	if len(cls) == 0 {
		delete(l.alerts.owners, cl.owner)
	} else {
		l.alerts.owners[cl.owner] = cls
	}
}
