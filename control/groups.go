package control

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/cespare/xxhash/v2"
)

// Groups is the queue-group state the records build: a replica every
// child keeps, applying the same records in the same order between the
// same items, so every child answers Owner alike. It is not safe for
// concurrent use.
type Groups struct {
	era, serial uint64
	groups      map[string]*group
	// owners caches BySymbol answers until the next change: a fan-out asks
	// for every item, and the answer moves only with the membership.
	owners map[ownerKey]ownerVal
}

type ownerKey struct {
	group string
	sym   uint32
}

type ownerVal struct {
	owner string
	ok    bool
}

type group struct {
	members map[string]*member
	names   []string // the members' names, sorted
}

type member struct {
	mode Mode
	ack  bool
	all  bool
	syms []uint32 // sorted
}

// NewGroups returns an empty replica (era 0: it takes any snapshot).
func NewGroups() *Groups {
	return &Groups{groups: map[string]*group{}, owners: map[ownerKey]ownerVal{}}
}

// Era and Serial say how far the replica is: every record of Era up to
// Serial applied.
func (g *Groups) Era() uint64    { return g.era }
func (g *Groups) Serial() uint64 { return g.serial }

// ErrGap: a record that does not follow the last applied one (another
// era, or a serial skipped): the replica needs a snapshot.
type ErrGap struct{ HaveEra, HaveSerial, Era, Serial uint64 }

func (e *ErrGap) Error() string {
	return fmt.Sprintf("control: record %d of era %d does not follow %d of era %d", e.Serial, e.Era, e.HaveSerial, e.HaveEra)
}

// Apply applies r if it is the next record. One already applied (a
// resend) is skipped: applied is false, err nil.
func (g *Groups) Apply(r Record) (applied bool, err error) {
	if g.era == 0 && g.serial == 0 && r.Serial == 1 { // fresh: the era's first record
		g.era = r.Era
	}
	switch {
	case r.Era == g.era && r.Serial <= g.serial:
		return false, nil
	case r.Era != g.era || r.Serial != g.serial+1:
		return false, &ErrGap{g.era, g.serial, r.Era, r.Serial}
	}
	g.apply(r.Op)
	g.serial = r.Serial
	return true, nil
}

func (g *Groups) apply(op Op) {
	if op.Kind.IsAlert() {
		return // the alert replica's (the child keeps it beside)
	}
	clear(g.owners)
	gr := g.groups[op.Group]
	switch op.Kind {
	case KindJoin:
		if gr == nil {
			gr = &group{members: map[string]*member{}}
			g.groups[op.Group] = gr
		}
		if _, ok := gr.members[op.Member]; !ok {
			i, _ := slices.BinarySearch(gr.names, op.Member)
			gr.names = slices.Insert(gr.names, i, op.Member)
		}
		gr.members[op.Member] = &member{mode: op.Mode, ack: op.Ack, all: op.All, syms: sortedSyms(op.Syms)}
	case KindLeave:
		if gr == nil {
			return
		}
		if _, ok := gr.members[op.Member]; ok {
			delete(gr.members, op.Member)
			i, _ := slices.BinarySearch(gr.names, op.Member)
			gr.names = slices.Delete(gr.names, i, i+1)
		}
		if len(gr.members) == 0 {
			delete(g.groups, op.Group)
		}
	}
}

// Load replaces the state with a snapshot: every record of era up to
// serial applied, live the join records of the members then (other
// records in it are skipped).
func (g *Groups) Load(era, serial uint64, live []Record) {
	g.era, g.serial, g.groups = era, serial, map[string]*group{}
	clear(g.owners)
	for _, r := range live {
		g.apply(r.Op)
	}
}

// Acks reports whether member of group ACKs (its leave redelivers).
func (g *Groups) Acks(name, memberName string) bool {
	if gr := g.groups[name]; gr != nil {
		if m := gr.members[memberName]; m != nil {
			return m.ack
		}
	}
	return false
}

// Members returns a group's members, sorted.
func (g *Groups) Members(name string) []string {
	if gr := g.groups[name]; gr != nil {
		return slices.Clone(gr.names)
	}
	return nil
}

// covers reports whether m takes symbol sym.
func (m *member) covers(sym uint32) bool {
	if m.all {
		return true
	}
	_, ok := slices.BinarySearch(m.syms, sym)
	return ok
}

// Owner is the member of group that gets item seq of symbol sym: among
// the members covering sym, by the mode of the first of them (by name),
// the highest rendezvous weight of (member, sym) for BySymbol, or the
// one drawn by a hash of seq for RoundRobin. ok is false when none covers sym.
func (g *Groups) Owner(name string, sym uint32, seq uint64) (owner string, ok bool) {
	gr := g.groups[name]
	if gr == nil {
		return "", false
	}
	if v, hit := g.owners[ownerKey{name, sym}]; hit {
		return v.owner, v.ok
	}
	mode, n := BySymbol, 0
	var best uint64
	var d xxhash.Digest
	var key [4]byte
	binary.LittleEndian.PutUint32(key[:], sym)
	for _, nm := range gr.names {
		m := gr.members[nm]
		if !m.covers(sym) {
			continue
		}
		if n == 0 {
			mode = m.mode
		}
		n++
		if mode == BySymbol {
			d.Reset()
			d.WriteString(nm)
			d.Write([]byte{0})
			d.Write(key[:])
			if w := d.Sum64(); w > best || !ok {
				owner, best, ok = nm, w, true
			}
		}
	}
	if mode == RoundRobin && n > 0 {
		// Item by item, by a hash of the seq: every child agrees with no
		// count to keep, and the share is even whatever the symbols' seqs.
		k := int(mix(seq) % uint64(n))
		for _, nm := range gr.names {
			if gr.members[nm].covers(sym) {
				if k == 0 {
					return nm, true
				}
				k--
			}
		}
	}
	if mode == BySymbol {
		g.owners[ownerKey{name, sym}] = ownerVal{owner, ok}
	}
	return owner, ok
}

// Clone returns a copy that moves on independently.
func (g *Groups) Clone() *Groups {
	c := &Groups{era: g.era, serial: g.serial, groups: make(map[string]*group, len(g.groups)), owners: map[ownerKey]ownerVal{}}
	for name, gr := range g.groups {
		ng := &group{members: make(map[string]*member, len(gr.members)), names: slices.Clone(gr.names)}
		for n, m := range gr.members {
			ng.members[n] = &member{mode: m.mode, ack: m.ack, all: m.all, syms: m.syms} // syms are never written after a join
		}
		c.groups[name] = ng
	}
	return c
}

// mix is a 64-bit finalizer (splitmix64): consecutive seqs spread evenly.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}
