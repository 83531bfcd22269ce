package control

import (
	"fmt"
	"slices"
	"strings"
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
}

type memberKey struct{ group, member string }

type liveMember struct {
	line int // the relay connection that submitted its join
	rec  Record
}

// NewSequencer starts era (a root's start time: a restart is a new era)
// keeping the last keep records.
func NewSequencer(era uint64, keep int) *Sequencer {
	return &Sequencer{era: era, keep: max(keep, 1), live: map[memberKey]*liveMember{}}
}

// Era is the sequencer's era.
func (s *Sequencer) Era() uint64 { return s.era }

// Serial is the last serial given (0: none).
func (s *Sequencer) Serial() uint64 { return s.serial }

// Submit sequences op from relay line (a connection id) after position
// head. A join of a member another line holds, or a leave of one it does
// not, is refused.
func (s *Sequencer) Submit(line int, op Op, head uint64) (Record, error) {
	if err := op.Check(); err != nil {
		return Record{}, err
	}
	k := memberKey{op.Group, op.Member}
	m := s.live[k]
	switch {
	case op.Kind == KindJoin && m != nil && m.line != line:
		return Record{}, fmt.Errorf("control: member %q of group %q is another child's", op.Member, op.Group)
	case op.Kind == KindLeave && (m == nil || m.line != line):
		return Record{}, fmt.Errorf("control: %q is not a member of group %q from this child", op.Member, op.Group)
	}
	if op.Kind == KindJoin {
		op.Syms = sortedSyms(op.Syms)
	}
	r := s.next(op, head)
	if op.Kind == KindJoin {
		s.live[k] = &liveMember{line: line, rec: r}
	} else {
		delete(s.live, k)
	}
	return r, nil
}

// LineDown sequences the leaves of every member line submitted: its
// child is gone. They come in (group, member) order.
func (s *Sequencer) LineDown(line int, head uint64) []Record {
	var gone []memberKey
	for k, m := range s.live {
		if m.line == line {
			gone = append(gone, k)
		}
	}
	slices.SortFunc(gone, func(a, b memberKey) int {
		if c := strings.Compare(a.group, b.group); c != 0 {
			return c
		}
		return strings.Compare(a.member, b.member)
	})
	out := make([]Record, 0, len(gone))
	for _, k := range gone {
		op := Op{Kind: KindLeave, Group: k.group, Member: k.member}
		if j := s.live[k].rec; j.Op.Ack {
			op.Acked = j.After // its last ACK died with its child: redeliver from its join
		}
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
