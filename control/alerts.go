package control

import (
	"encoding/binary"
	"fmt"

	"tickrelay/alert"
)

// Alert op layout: kind u8, flags u8 (1 armed, 2 repeat, 4 gone), ownerLen
// u8, owner, idLen u8, id, then
//
//	KindAlert:          sym u32, field u8, op u8, value i32, hyst i32
//	KindUnalert, Rearm: nothing
//	KindFired:          sym u32, field u8, value i32, pos u64, t i64, n u64, after u64
//
// (little endian).

func (op *Op) checkAlert() error {
	a := &op.Alert
	switch {
	case op.Kind == KindAlert:
		if err := a.Check(); err != nil {
			return bad("%v", err)
		}
	case !alert.ValidName(a.Owner, alert.MaxOwner) || !alert.ValidName(a.ID, alert.MaxID):
		return bad("bad alert owner %.80q or id %.40q", a.Owner, a.ID)
	case op.Kind == KindFired && (op.Fired.Field > alert.Ask || op.Fired.N == 0 || op.Fired.ID != a.ID):
		return bad("a fire of field %d numbered %d, id %.40q", op.Fired.Field, op.Fired.N, op.Fired.ID)
	}
	return nil
}

func appendAlertOp(dst []byte, op *Op) []byte {
	a := &op.Alert
	flags := byte(0)
	if op.Armed {
		flags |= 1
	}
	if a.Repeat {
		flags |= 2
	}
	if op.Fired.Gone {
		flags |= 4
	}
	dst = append(dst, byte(op.Kind), flags, byte(len(a.Owner)))
	dst = append(dst, a.Owner...)
	dst = append(append(dst, byte(len(a.ID))), a.ID...)
	le := binary.LittleEndian
	switch op.Kind {
	case KindAlert:
		dst = le.AppendUint32(dst, a.Sym)
		dst = append(dst, byte(a.Field), byte(a.Op))
		dst = le.AppendUint32(dst, uint32(a.Value))
		dst = le.AppendUint32(dst, uint32(a.Hyst))
	case KindFired:
		f := &op.Fired
		dst = le.AppendUint32(dst, f.Sym)
		dst = append(dst, byte(f.Field))
		dst = le.AppendUint32(dst, uint32(f.Value))
		dst = le.AppendUint64(dst, f.Pos)
		dst = le.AppendUint64(dst, uint64(f.T))
		dst = le.AppendUint64(dst, f.N)
		dst = le.AppendUint64(dst, f.After)
	}
	return dst
}

func parseAlertOp(p []byte) (Op, error) {
	var op Op
	if len(p) < 3 {
		return op, bad("alert op of %d bytes", len(p))
	}
	op.Kind = Kind(p[0])
	flags := p[1]
	if flags > 7 {
		return op, bad("alert flags %d", flags)
	}
	op.Armed, op.Alert.Repeat, op.Fired.Gone = flags&1 != 0, flags&2 != 0, flags&4 != 0
	n := int(p[2])
	p = p[3:]
	if len(p) < n+1 {
		return op, bad("truncated alert owner")
	}
	op.Alert.Owner, p = string(p[:n]), p[n:]
	n = int(p[0])
	p = p[1:]
	if len(p) < n {
		return op, bad("truncated alert id")
	}
	op.Alert.ID, p = string(p[:n]), p[n:]
	le := binary.LittleEndian
	want := 0
	switch op.Kind {
	case KindAlert:
		want = 14
	case KindFired:
		want = 41
	}
	if len(p) != want {
		return op, bad("alert op kind %d with %d bytes after its id", op.Kind, len(p))
	}
	switch op.Kind {
	case KindAlert:
		a := &op.Alert
		a.Sym, a.Field, a.Op = le.Uint32(p), alert.Field(p[4]), alert.Op(p[5])
		a.Value, a.Hyst = int32(le.Uint32(p[6:])), int32(le.Uint32(p[10:]))
	case KindFired:
		f := &op.Fired
		f.ID = op.Alert.ID
		f.Sym, f.Field, f.Value = le.Uint32(p), alert.Field(p[4]), int32(le.Uint32(p[5:]))
		f.Pos, f.T, f.N, f.After = le.Uint64(p[9:]), int64(le.Uint64(p[17:])), le.Uint64(p[25:]), le.Uint64(p[33:])
	}
	if op.Kind != KindAlert && (op.Alert.Repeat || op.Armed) {
		return op, bad("alert op kind %d with flags %d", op.Kind, flags)
	}
	if op.Kind != KindFired && op.Fired.Gone {
		return op, bad("alert op kind %d with flags %d", op.Kind, flags)
	}
	return op, op.Check()
}

// ApplyAlert applies an alert record to a replica (a child's set).
func ApplyAlert(s *alert.Set, r Record) error {
	op := &r.Op
	a := &op.Alert
	switch op.Kind {
	case KindAlert:
		d := *a
		d.After = r.After
		return s.Add(d, true)
	case KindUnalert:
		_, err := s.Remove(a.Owner, a.ID)
		return err
	case KindRearm:
		return s.Rearm(a.Owner, a.ID)
	case KindFired:
		f, err := s.Fire(a.Owner, op.Fired)
		if err == nil && (f.N != op.Fired.N || f.Gone != op.Fired.Gone || f.After != op.Fired.After) {
			err = fmt.Errorf("control: fire %d of %q is the replica's %d", op.Fired.N, a.Owner, f.N)
		}
		return err
	}
	return nil
}

// LoadAlert adds a snapshot's alert record to a replica being loaded.
func LoadAlert(s *alert.Set, r Record) error {
	op := &r.Op
	switch op.Kind {
	case KindAlert:
		d := op.Alert
		d.After = r.After
		return s.Add(d, op.Armed)
	case KindFired:
		s.LoadFired(op.Alert.Owner, op.Fired)
	}
	return nil
}
