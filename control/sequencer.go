package control

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"tickrelay/alert"
)

// Sequencer is the root's half: it numbers the ops children submit,
// places each after the root's head, keeps the last records for children
// that reconnect, and the live members for those that start afresh. It is
// not safe for concurrent use.
type Sequencer struct {
	era    uint64
	serial uint64
	keep   int
	recent []Record // the last keep records, oldest first
	live   map[memberKey]*liveMember
	alerts *alert.Set // the engine: standing alerts, matched by Match
	// MaxAlerts caps the alerts one owner may hold (0: no cap).
	MaxAlerts int
	// Linger (ns) is how long a Static member's place is held after its
	// connection ended (a Linger leave, or its child's line down): a join
	// of it from any child meanwhile takes its place back (with its
	// unacknowledged items); otherwise its leave is sequenced then
	// (Expire). 0: at once.
	Linger int64
	hits   []alert.Hit
}

// ErrStale: a leave of a connection the member has left (its new one's
// join came first); nothing to do.
var ErrStale = errors.New("control: stale")

// FiresKept is how many of each owner's last fires the sequencer and the
// replicas keep for a client that comes back.
const FiresKept = 64

type memberKey struct{ group, member string }

type liveMember struct {
	line int // the relay connection that submitted its join
	rec  Record
	// held: its connection ended, and its place is held until due; acked
	// is then its leave's Acked.
	held  bool
	due   int64
	acked uint64
}

// NewSequencer starts era (a root's start time: a restart is a new era)
// keeping the last keep records.
func NewSequencer(era uint64, keep int) *Sequencer {
	return &Sequencer{era: era, keep: max(keep, 1), live: map[memberKey]*liveMember{}, alerts: alert.NewSet(true, FiresKept)}
}

// Alerts is the engine's set (read only: records change it).
func (s *Sequencer) Alerts() *alert.Set { return s.alerts }

// Era is the sequencer's era.
func (s *Sequencer) Era() uint64 { return s.era }

// Serial is the last serial given (0: none).
func (s *Sequencer) Serial() uint64 { return s.serial }

// Submit sequences op from relay line (a connection id) after position
// head, at time now (ns). A leave of a member another line or origin
// holds is refused, and so is a join of a member another line holds,
// unless it is Static: then the join moves it (a client that came back
// elsewhere, or its second connection), with the items it may not have
// handled (Op.Acked). A Linger leave of a Static member is held
// (sequenced false) for Linger: its place waits for it.
func (s *Sequencer) Submit(line int, op Op, head uint64, now int64) (r Record, sequenced bool, err error) {
	if err := op.Check(); err != nil {
		return Record{}, false, err
	}
	if op.Kind.IsAlert() {
		r, err := s.submitAlert(op, head)
		return r, err == nil, err
	}
	k := memberKey{op.Group, op.Member}
	m := s.live[k]
	switch {
	case op.Kind == KindJoin && m != nil && m.line != line && !(op.Static && m.rec.Op.Static):
		return Record{}, false, fmt.Errorf("control: member %q of group %q is another child's", op.Member, op.Group)
	case op.Kind == KindLeave && (m == nil || m.held || m.line != line || m.rec.Op.Origin != op.Origin):
		return Record{}, false, fmt.Errorf("control: %q is not a member of group %q from this child", op.Member, op.Group)
	case op.Kind == KindLeave && m.rec.Op.Conn != op.Conn:
		return Record{}, false, fmt.Errorf("%w: a leave of %q of group %q from a connection it has left", ErrStale, op.Member, op.Group)
	}
	if op.Kind == KindLeave {
		if op.Linger && m.rec.Op.Static && s.Linger > 0 {
			m.held, m.due, m.acked = true, now+s.Linger, op.Acked
			return Record{}, false, nil
		}
		delete(s.live, k)
		return s.next(op, head), true, nil
	}
	op.Syms, op.Acked = sortedSyms(op.Syms), 0
	if m != nil && op.Ack && m.rec.Op.Ack {
		switch {
		case m.held:
			op.Acked = m.acked // back in its place: what it had not acknowledged goes to it again
		case m.rec.Op.Origin != op.Origin || m.rec.Op.Conn != op.Conn:
			// Taken over while its old connection lives (or before its
			// close or its child's line down is seen): its ACKs there
			// are not known here, so it gets again what it owned since
			// its join.
			op.Acked = m.rec.After
		}
	}
	r = s.next(op, head)
	s.live[k] = &liveMember{line: line, rec: r}
	return r, true, nil
}

// LineDown sequences the leaves of every member line submitted: its
// child is gone. They come in (group, member) order. Static members'
// places are held instead (Linger), their last ACK their join point.
func (s *Sequencer) LineDown(line int, head uint64, now int64) []Record {
	var gone []memberKey
	for k, m := range s.live {
		if m.line != line || m.held {
			continue
		}
		acked := uint64(0)
		if m.rec.Op.Ack {
			acked = m.rec.After // its last ACK died with its child: redeliver from its join
		}
		if m.rec.Op.Static && s.Linger > 0 {
			m.held, m.due, m.acked = true, now+s.Linger, acked
			continue
		}
		m.acked = acked
		gone = append(gone, k)
	}
	return s.leaves(gone, head)
}

// Expire sequences the leaves of the members whose places were held
// until now, in (group, member) order.
func (s *Sequencer) Expire(head uint64, now int64) []Record {
	var gone []memberKey
	for k, m := range s.live {
		if m.held && m.due <= now {
			gone = append(gone, k)
		}
	}
	return s.leaves(gone, head)
}

// Held is how many members' places are held.
func (s *Sequencer) Held() (n int) {
	for _, m := range s.live {
		if m.held {
			n++
		}
	}
	return n
}

// leaves sequences the leaves of gone, sorted, each with its acked.
func (s *Sequencer) leaves(gone []memberKey, head uint64) []Record {
	slices.SortFunc(gone, func(a, b memberKey) int {
		if c := strings.Compare(a.group, b.group); c != 0 {
			return c
		}
		return strings.Compare(a.member, b.member)
	})
	out := make([]Record, 0, len(gone))
	for _, k := range gone {
		m := s.live[k]
		op := Op{Kind: KindLeave, Group: k.group, Member: k.member, Origin: m.rec.Op.Origin, Acked: m.acked}
		delete(s.live, k)
		out = append(out, s.next(op, head))
	}
	return out
}

func (s *Sequencer) next(op Op, head uint64) Record {
	s.serial++
	r := Record{Era: s.era, Serial: s.serial, After: head, Op: op}
	if len(s.recent) == s.keep {
		copy(s.recent, s.recent[1:])
		s.recent = s.recent[:len(s.recent)-1]
	}
	s.recent = append(s.recent, r)
	return r
}

// Since returns the records after serial for a child that applied every
// record of era up to serial; ok is false when it needs a Snapshot (another
// era, or records it lacks are no longer kept).
func (s *Sequencer) Since(era, serial uint64) (recs []Record, ok bool) {
	switch {
	case era != s.era || serial > s.serial:
		return nil, false
	case serial == s.serial:
		return nil, true
	case len(s.recent) == 0 || s.recent[0].Serial > serial+1:
		return nil, false
	}
	i := int(serial + 1 - s.recent[0].Serial)
	return slices.Clone(s.recent[i:]), true
}

// Snapshot is the state as of Serial: the join record of every live
// member, in serial order.
func (s *Sequencer) Snapshot() (serial uint64, live []Record) {
	for _, m := range s.live {
		live = append(live, m.rec)
	}
	slices.SortFunc(live, func(a, b Record) int { return int(int64(a.Serial) - int64(b.Serial)) })
	return s.serial, live
}

// Next returns the record after serial for a child that applied every
// record of era up to serial: ok is false when there is none yet, and
// snapshot true when the child needs a Snapshot instead (another era, or
// the record is no longer kept). It does not allocate.
func (s *Sequencer) Next(era, serial uint64) (r Record, ok, snapshot bool) {
	switch {
	case era != s.era || serial > s.serial:
		return Record{}, false, true
	case serial == s.serial:
		return Record{}, false, false
	case len(s.recent) == 0 || s.recent[0].Serial > serial+1:
		return Record{}, false, true
	}
	return s.recent[serial+1-s.recent[0].Serial], true, false
}

// submitAlert sequences a child's ALERT or UNALERT, refusing an id in use,
// an owner over MaxAlerts, an unknown id, and the kinds only the engine
// makes.
func (s *Sequencer) submitAlert(op Op, head uint64) (Record, error) {
	a := &op.Alert
	switch op.Kind {
	case KindAlert:
		if _, _, ok := s.alerts.Get(a.Owner, a.ID); ok {
			return Record{}, fmt.Errorf("control: alert %q of %q is in use", a.ID, a.Owner)
		}
		if s.MaxAlerts > 0 && s.alerts.Count(a.Owner) >= s.MaxAlerts {
			return Record{}, fmt.Errorf("control: %q holds %d alerts already", a.Owner, s.MaxAlerts)
		}
		op.Armed = true
		d := *a
		d.After = head
		if err := s.alerts.Add(d, true); err != nil {
			return Record{}, err
		}
	case KindUnalert:
		if _, err := s.alerts.Remove(a.Owner, a.ID); err != nil {
			return Record{}, err
		}
	default:
		return Record{}, fmt.Errorf("control: a child may not submit kind %d", op.Kind)
	}
	return s.next(op, head), nil
}

// Match runs the engine on an update of sym's field to price by the item
// at pos, stamped t: it sequences, after pos, a Fired record for each
// alert the update fires and a Rearm for each it arms again, and returns
// how many of each. An update that reaches nothing does not allocate.
func (s *Sequencer) Match(sym uint32, field alert.Field, price int32, pos uint64, t int64) (fired, rearmed int) {
	s.hits = s.alerts.Match(sym, field, price, pos, s.hits[:0])
	for _, h := range s.hits {
		d := s.alerts.Def(h.Slot)
		op := Op{Kind: KindRearm, Alert: alert.Def{Owner: d.Owner, ID: d.ID}}
		if h.Rearm {
			s.alerts.RearmSlot(h.Slot)
			rearmed++
		} else {
			fired++
			op.Kind = KindFired
			op.Fired = s.alerts.FireSlot(h.Slot, alert.Fired{ID: d.ID, Value: price, Pos: pos, T: t})
		}
		s.next(op, pos)
	}
	return fired, rearmed
}

// SnapshotParts encodes the state as of Serial (the join record of every
// live member, then every standing alert and each owner's kept fires) as
// snapshot parts of about maxPart bytes, calling emit with each.
func (s *Sequencer) SnapshotParts(maxPart int, emit func(part []byte) error) error {
	serial, live := s.Snapshot()
	h := SnapshotHeader{Era: s.era, Serial: serial}
	var buf []byte
	var n uint32
	var err error
	start := func() {
		buf, _ = AppendSnapshot(buf[:0], h, nil)
		n = 0
	}
	flush := func(last bool) error {
		h.Last = last
		head, _ := AppendSnapshot(nil, h, nil)
		copy(buf, head)
		binary.LittleEndian.PutUint32(buf[snapshotHeaderLen-4:], n)
		if err := emit(buf); err != nil {
			return err
		}
		h.Part++
		start()
		return nil
	}
	add := func(r Record) bool {
		if buf, err = appendSnapshotRecord(buf, r); err != nil {
			return false
		}
		if n++; len(buf) >= maxPart {
			err = flush(false)
		}
		return err == nil
	}
	start()
	for _, r := range live {
		if !add(r) {
			return err
		}
	}
	s.alerts.Each(func(d alert.Def, armed bool) {
		if err == nil {
			add(Record{Era: s.era, After: d.After, Op: Op{Kind: KindAlert, Alert: d, Armed: armed}})
		}
	})
	s.alerts.EachFired(func(owner string, f alert.Fired) {
		if err == nil {
			add(Record{Era: s.era, Op: Op{Kind: KindFired, Alert: alert.Def{Owner: owner, ID: f.ID}, Fired: f}})
		}
	})
	if err != nil {
		return err
	}
	return flush(true)
}
