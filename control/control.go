// Package control is the sequenced control stream that queue groups (and
// alerts) need: a change every child must apply at the same point of the
// feed. Children submit operations to the root over the relay line; the
// root's Sequencer numbers each one (Serial) and places it after the
// exchange position it had reached (After); the relay sends each record in
// the stream right after the items up to After, so every child applies it
// between the same two items. Groups is the state the records build, a
// pure replica each child keeps and that answers who owns what.
//
// Both cores are pure and deterministic: no I/O, no clock; the caller
// passes lines, heads and records in.
package control

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"tickrelay/alert"
)

// Kind is what an Op does.
type Kind uint8

const (
	KindJoin  Kind = 1 // a member joins a group (or changes its subscription)
	KindLeave Kind = 2 // a member leaves a group
	// Alerts (package alert): a child submits KindAlert and KindUnalert;
	// the root's engine sequences KindFired and KindRearm after the item
	// that reached the alert.
	KindAlert   Kind = 3 // Alert stands (in a snapshot, Armed false: a repeat alert waiting)
	KindUnalert Kind = 4 // Alert.Owner's alert Alert.ID goes
	KindFired   Kind = 5 // Alert.Owner's alert Fired.ID fired
	KindRearm   Kind = 6 // Alert.Owner's waiting alert Alert.ID is armed again
)

// IsAlert reports whether k is an alert kind.
func (k Kind) IsAlert() bool { return k >= KindAlert && k <= KindRearm }

// Mode is how a group spreads items over its members.
type Mode uint8

const (
	// BySymbol: each symbol has one owner among the members that cover it
	// (rendezvous hashing), so one member sees every update of a symbol.
	BySymbol Mode = 0
	// RoundRobin: the covering members share the items one by one (by a
	// hash of the seq: every child agrees with no count to keep), for
	// stateless work.
	RoundRobin Mode = 1
)

// Limits of an Op.
const (
	MaxName = 64    // group and member names
	MaxSyms = 65536 // symbols of one join
)

// Op is one operation a child submits.
type Op struct {
	Kind  Kind
	Group string
	// Member is unique in the group: the client's identity (Static), else
	// a name its child makes ("~" and the origin's).
	Member string
	// Origin is the child loop that submitted a join or leave
	// ("child/loop"): where the member is. A join from another origin
	// moves a member there.
	Origin string
	// Conn names the member's connection at its origin (a count there):
	// a leave of another connection than the member's last join is stale
	// (its client came back first), and a join from another one takes
	// the member over.
	Conn   uint64
	Static bool // join: the member is an identity: its leave on a close may wait for it (Sequencer.Linger)
	Linger bool // leave: a close, not an UNSUB: a Static member's place is held for it
	Mode   Mode // join
	All    bool // join: every symbol ("*")
	Ack    bool // join: the member ACKs; a leave's unacknowledged items are redelivered
	Syms   []uint32
	// Acked (a leave of an ack member): the position (wire.Pos) of its
	// last ACK; the items after it that it owned go to their new owners.
	// In a join record (the sequencer's): the member came back while its
	// place was held; the items it owned after Acked go to it again.
	Acked uint64

	// Alert kinds: Alert.Owner and Alert.ID name the alert (KindAlert: all
	// of Alert); Armed (KindAlert); Fired (KindFired; its ID is Alert.ID).
	Alert alert.Def
	Armed bool
	Fired alert.Fired
}

// Record is an Op the root sequenced: the Serial-th of its era, applied
// after the item at position After (wire.Pos).
type Record struct {
	Era    uint64 // the sequencer's (a root restart starts a new one)
	Serial uint64
	After  uint64
	Op     Op
}

// ErrBad is what a malformed op or record is.
var ErrBad = errors.New("control: malformed")

func bad(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBad, fmt.Sprintf(format, args...))
}

// ValidName reports whether s is a legal group name or identity: 1..MaxName
// of [A-Za-z0-9._:/-] (alert ids and owners have the same alphabet).
func ValidName(s string) bool { return alert.ValidName(s, MaxName) }

// ValidMember reports whether s is a legal member name: an identity, or
// "~" and one (a name a child made, which no identity can take).
func ValidMember(s string) bool { return ValidName(strings.TrimPrefix(s, "~")) }

// Check reports what is wrong with op, if anything.
func (op *Op) Check() error {
	if op.Kind.IsAlert() {
		return op.checkAlert()
	}
	switch {
	case op.Kind != KindJoin && op.Kind != KindLeave:
		return bad("unknown kind %d", op.Kind)
	case !ValidName(op.Group):
		return bad("bad group name %.80q", op.Group)
	case !ValidMember(op.Member):
		return bad("bad member name %.80q", op.Member)
	case op.Origin != "" && !ValidName(op.Origin):
		return bad("bad origin %.80q", op.Origin)
	case op.Mode > RoundRobin:
		return bad("unknown mode %d", op.Mode)
	case len(op.Syms) > MaxSyms:
		return bad("%d symbols > %d", len(op.Syms), MaxSyms)
	case op.Kind == KindLeave && (op.All || op.Ack || op.Static || len(op.Syms) > 0):
		return bad("a leave names symbols")
	case op.Kind == KindJoin && op.Linger:
		return bad("a join that lingers")
	}
	return nil
}

// Op layout: kind u8, mode u8, flags u8 (1 all, 2 ack, 4 static, 8
// linger), groupLen u8, group, memberLen u8, member, originLen u8, origin,
// conn u64, count u32, count x sym u32, acked u64 (little endian).

// AppendOp appends op's encoding.
func AppendOp(dst []byte, op Op) ([]byte, error) {
	if err := op.Check(); err != nil {
		return dst, err
	}
	if op.Kind.IsAlert() {
		return appendAlertOp(dst, &op), nil
	}
	flags := byte(0)
	if op.All {
		flags |= 1
	}
	if op.Ack {
		flags |= 2
	}
	if op.Static {
		flags |= 4
	}
	if op.Linger {
		flags |= 8
	}
	dst = append(dst, byte(op.Kind), byte(op.Mode), flags, byte(len(op.Group)))
	dst = append(dst, op.Group...)
	dst = append(append(dst, byte(len(op.Member))), op.Member...)
	dst = append(append(dst, byte(len(op.Origin))), op.Origin...)
	dst = binary.LittleEndian.AppendUint64(dst, op.Conn)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(op.Syms)))
	for _, s := range op.Syms {
		dst = binary.LittleEndian.AppendUint32(dst, s)
	}
	return binary.LittleEndian.AppendUint64(dst, op.Acked), nil
}

// ParseOp decodes an op; it copies what it keeps.
func ParseOp(p []byte) (Op, error) {
	var op Op
	if len(p) > 0 && Kind(p[0]).IsAlert() {
		return parseAlertOp(p)
	}
	if len(p) < 4 {
		return op, bad("op of %d bytes", len(p))
	}
	op.Kind, op.Mode, op.All, op.Ack = Kind(p[0]), Mode(p[1]), p[2]&1 != 0, p[2]&2 != 0
	op.Static, op.Linger = p[2]&4 != 0, p[2]&8 != 0
	if p[2] > 15 {
		return op, bad("flags %d", p[2])
	}
	n := int(p[3])
	p = p[4:]
	if len(p) < n+1 {
		return op, bad("truncated group")
	}
	op.Group, p = string(p[:n]), p[n:]
	n = int(p[0])
	p = p[1:]
	if len(p) < n+1 {
		return op, bad("truncated member")
	}
	op.Member, p = string(p[:n]), p[n:]
	n = int(p[0])
	p = p[1:]
	if len(p) < n+8+4+8 {
		return op, bad("truncated origin")
	}
	op.Origin, p = string(p[:n]), p[n:]
	op.Conn, p = binary.LittleEndian.Uint64(p), p[8:]
	count := binary.LittleEndian.Uint32(p)
	p = p[4:]
	if count > MaxSyms || uint64(len(p)) != 4*uint64(count)+8 {
		return op, bad("%d symbols in %d bytes", count, len(p))
	}
	op.Acked = binary.LittleEndian.Uint64(p[4*count:])
	if count > 0 {
		op.Syms = make([]uint32, count)
		for i := range op.Syms {
			op.Syms[i] = binary.LittleEndian.Uint32(p[4*i:])
		}
	}
	return op, op.Check()
}

// AppendRecord appends r's encoding: era u64, serial u64, after u64, op.
func AppendRecord(dst []byte, r Record) ([]byte, error) {
	dst = binary.LittleEndian.AppendUint64(dst, r.Era)
	dst = binary.LittleEndian.AppendUint64(dst, r.Serial)
	dst = binary.LittleEndian.AppendUint64(dst, r.After)
	return AppendOp(dst, r.Op)
}

// ParseRecord decodes a record.
func ParseRecord(p []byte) (Record, error) {
	if len(p) < 24 {
		return Record{}, bad("record of %d bytes", len(p))
	}
	r := Record{Era: binary.LittleEndian.Uint64(p), Serial: binary.LittleEndian.Uint64(p[8:]), After: binary.LittleEndian.Uint64(p[16:])}
	op, err := ParseOp(p[24:])
	r.Op = op
	return r, err
}

// sortedSyms returns syms sorted, without repeats (a copy).
func sortedSyms(syms []uint32) []uint32 {
	s := slices.Clone(syms)
	slices.Sort(s)
	return slices.Compact(s)
}

// SnapshotHeader starts each part of a snapshot: the state as of Serial
// of Era comes in parts (a relay frame holds a few MiB; a million alerts
// take tens), numbered from 0, applied as a whole once the Last one came.
type SnapshotHeader struct {
	Era, Serial uint64
	Part        uint32
	Last        bool
}

// AppendSnapshot appends a snapshot part's encoding: era u64, serial u64,
// part u32, last u8, count u32, count x (length u32, record).
func AppendSnapshot(dst []byte, h SnapshotHeader, live []Record) ([]byte, error) {
	dst = binary.LittleEndian.AppendUint64(dst, h.Era)
	dst = binary.LittleEndian.AppendUint64(dst, h.Serial)
	dst = binary.LittleEndian.AppendUint32(dst, h.Part)
	last := byte(0)
	if h.Last {
		last = 1
	}
	dst = append(dst, last)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(live)))
	for _, r := range live {
		var err error
		if dst, err = appendSnapshotRecord(dst, r); err != nil {
			return dst, err
		}
	}
	return dst, nil
}

func appendSnapshotRecord(dst []byte, r Record) ([]byte, error) {
	at := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	var err error
	if dst, err = AppendRecord(dst, r); err != nil {
		return dst[:at], err
	}
	binary.LittleEndian.PutUint32(dst[at:], uint32(len(dst)-at-4))
	return dst, nil
}

// snapshotHeaderLen is AppendSnapshot's bytes before the records.
const snapshotHeaderLen = 25

// ParseSnapshot decodes a snapshot part.
func ParseSnapshot(p []byte) (h SnapshotHeader, live []Record, err error) {
	if len(p) < snapshotHeaderLen {
		return h, nil, bad("snapshot of %d bytes", len(p))
	}
	h.Era, h.Serial = binary.LittleEndian.Uint64(p), binary.LittleEndian.Uint64(p[8:])
	h.Part = binary.LittleEndian.Uint32(p[16:])
	if p[20] > 1 {
		return h, nil, bad("snapshot last flag %d", p[20])
	}
	h.Last = p[20] == 1
	n := binary.LittleEndian.Uint32(p[21:])
	p = p[snapshotHeaderLen:]
	if uint64(n)*28 > uint64(len(p)) {
		return h, nil, bad("%d records in %d bytes", n, len(p))
	}
	live = make([]Record, 0, n)
	for range n {
		if len(p) < 4 {
			return h, nil, bad("truncated snapshot")
		}
		l := binary.LittleEndian.Uint32(p)
		if uint64(l) > uint64(len(p)-4) {
			return h, nil, bad("truncated snapshot record")
		}
		r, err := ParseRecord(p[4 : 4+l])
		if err != nil {
			return h, nil, err
		}
		live = append(live, r)
		p = p[4+l:]
	}
	if len(p) != 0 {
		return h, nil, bad("%d bytes after the snapshot", len(p))
	}
	return h, live, nil
}
