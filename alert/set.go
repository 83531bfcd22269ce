package alert

import (
	"errors"
	"fmt"

	"github.com/cespare/xxhash/v2"
)

// Set is the standing alerts and each owner's last fires. With matching
// (the root's engine) it also keeps the ladders Match reads; a replica
// (a child's) keeps only what ALERTS and a returning client need. Not safe
// for concurrent use.
type Set struct {
	slots    []slot
	free     []uint32
	byID     index
	owners   []owner
	ownerOf  map[string]uint32
	ids      []byte // every slot's id, back to back; compacted when half is dead
	deadIDs  int
	standing int
	keepLog  int
	ladders  map[uint64]*ladders // sym<<2 | field; nil without matching
}

// A slot is one alert, packed in 40 bytes with no pointers (the GC does not
// scan a million of them): with its ladder rung and index entry an alert
// stays under 100 bytes.
type slot struct {
	after uint64
	value int32
	hyst  int32
	sym   uint32
	owner uint32
	opos  uint32 // its place in its owner's slots
	idOff uint32 // its id is ids[idOff:idOff+idLen]
	idLen uint8
	field Field
	op    Op
	flags uint8
}

const (
	used   = 1
	repeat = 2
	armed  = 4
)

type owner struct {
	name    string
	slots   []uint32
	log     []Fired // the last keepLog fires, a ring from logAt
	logAt   int
	fires   uint64 // N of the owner's last fire
	dropped uint64 // N of the newest fire no longer in log
}

type ladders struct{ up, down ladder }

// Fired is one fire: alert ID of its owner reached at the item at Pos
// (wire.Pos) stamped T by the exchange, the field then at Value. N numbers
// the owner's fires from 1 (a returning client says the last it saw); Gone
// says the alert is gone (not repeat).
type Fired struct {
	ID    string
	Sym   uint32
	Field Field
	Value int32
	Pos   uint64
	T     int64
	N     uint64
	Gone  bool
	After uint64 // the alert's Def.After
}

// Errors of Set's operations.
var (
	ErrExists  = errors.New("alert: id in use")
	ErrUnknown = errors.New("alert: no such alert")
)

// NewSet returns an empty set that keeps each owner's last keepLog fires;
// with match, Match works.
func NewSet(match bool, keepLog int) *Set {
	s := &Set{ownerOf: map[string]uint32{}, keepLog: max(keepLog, 1)}
	if match {
		s.ladders = map[uint64]*ladders{}
	}
	return s
}

// Len is the number of standing alerts.
func (s *Set) Len() int { return s.standing }

// Owners is the number of owners with alerts or fires kept.
func (s *Set) Owners() int { return len(s.owners) }

func keyOf(owner uint32, id string) uint64 {
	return xxhash.Sum64String(id) ^ (uint64(owner)+1)*0x9e3779b97f4a7c15
}

func (s *Set) ownerIndex(name string, create bool) (uint32, bool) {
	if o, ok := s.ownerOf[name]; ok {
		return o, true
	}
	if !create {
		return 0, false
	}
	o := uint32(len(s.owners))
	s.owners = append(s.owners, owner{name: name})
	s.ownerOf[name] = o
	return o, true
}

func (s *Set) id(i uint32) []byte {
	sl := &s.slots[i]
	return s.ids[sl.idOff : sl.idOff+uint32(sl.idLen)]
}

func (s *Set) lookup(o uint32, id string) (uint32, bool) { return s.byID.get(s, o, id) }

// Add makes d stand, armed or (a repeat alert that fired and waits to be
// re-armed) not. d must Check.
func (s *Set) Add(d Def, isArmed bool) error {
	if err := d.Check(); err != nil {
		return err
	}
	o, _ := s.ownerIndex(d.Owner, true)
	if _, ok := s.lookup(o, d.ID); ok {
		return fmt.Errorf("%w: %s of %s", ErrExists, d.ID, d.Owner)
	}
	var i uint32
	if n := len(s.free); n > 0 {
		i, s.free = s.free[n-1], s.free[:n-1]
	} else {
		i = uint32(len(s.slots))
		s.slots = append(s.slots, slot{})
	}
	s.compactIDs()
	own := &s.owners[o]
	sl := slot{after: d.After, value: d.Value, hyst: d.Hyst, sym: d.Sym, owner: o, opos: uint32(len(own.slots)),
		idOff: uint32(len(s.ids)), idLen: uint8(len(d.ID)), field: d.Field, op: d.Op, flags: used}
	s.ids = append(s.ids, d.ID...)
	if d.Repeat {
		sl.flags |= repeat
	}
	if isArmed || !d.Repeat {
		sl.flags |= armed
	}
	s.slots[i] = sl
	own.slots = append(own.slots, i)
	s.byID.put(s, i)
	s.standing++
	s.place(i, true)
	return nil
}

// Remove takes the alert away and returns it.
func (s *Set) Remove(ownerName, id string) (Def, error) {
	o, ok := s.ownerIndex(ownerName, false)
	var i uint32
	if ok {
		i, ok = s.lookup(o, id)
	}
	if !ok {
		return Def{}, fmt.Errorf("%w: %s of %s", ErrUnknown, id, ownerName)
	}
	d := s.def(i)
	s.drop(i)
	return d, nil
}

func (s *Set) drop(i uint32) {
	sl := &s.slots[i]
	s.place(i, false)
	s.byID.del(s, i)
	s.deadIDs += int(sl.idLen)
	own := &s.owners[sl.owner]
	last := own.slots[len(own.slots)-1]
	own.slots[sl.opos] = last
	s.slots[last].opos = sl.opos
	own.slots = own.slots[:len(own.slots)-1]
	*sl = slot{}
	s.free = append(s.free, i)
	s.standing--
}

// compactIDs rewrites ids without the dead ones once they are half of it.
func (s *Set) compactIDs() {
	if s.deadIDs < 4096 || s.deadIDs < len(s.ids)/2 {
		return
	}
	ids := make([]byte, 0, len(s.ids)-s.deadIDs+4096)
	for i := range s.slots {
		if sl := &s.slots[i]; sl.flags&used != 0 {
			off := uint32(len(ids))
			ids = append(ids, s.id(uint32(i))...)
			sl.idOff = off
		}
	}
	s.ids, s.deadIDs = ids, 0
}

// place puts slot i's rung on (or takes it off) its ladder: an armed alert
// at its value on the side it fires from, a waiting one at its re-arm point
// on the other side.
func (s *Set) place(i uint32, on bool) {
	if s.ladders == nil {
		return
	}
	sl := &s.slots[i]
	lk := uint64(sl.sym)<<2 | uint64(sl.field)
	ls := s.ladders[lk]
	if ls == nil {
		if !on {
			return
		}
		ls = new(ladders)
		s.ladders[lk] = ls
	}
	l, r := s.rungOf(ls, i)
	if on {
		l.insert(r)
		return
	}
	l.remove(r)
	if len(ls.up.chunks) == 0 && len(ls.down.chunks) == 0 {
		delete(s.ladders, lk)
	}
}

func (s *Set) rungOf(ls *ladders, i uint32) (*ladder, uint64) {
	sl := &s.slots[i]
	up := sl.op == AtOrAbove
	v := int64(sl.value)
	if sl.flags&armed == 0 { // waiting: re-armed once the value is back past by hyst
		up = !up
		if up {
			v += int64(sl.hyst)
		} else {
			v -= int64(sl.hyst)
		}
		v = max(min(v, MaxValue), -MaxValue)
	}
	if up {
		return &ls.up, rung(upKey(int32(v)), i)
	}
	return &ls.down, rung(downKey(int32(v)), i)
}

// Hit is an alert an update reached: it fires (Rearm false) or, a repeat
// alert waiting, is armed again.
type Hit struct {
	Slot  uint32
	Rearm bool
}

// Match appends the alerts an update of sym's field to price, by the item
// at pos, reaches, the lowest threshold first on the up side then the
// highest on the down side; an alert standing from pos or later is not
// reached (it fires at the first update after its After).
// It changes nothing (the caller applies Fire and Rearm); it does not
// allocate once dst has room. Without matching it finds nothing.
func (s *Set) Match(sym uint32, field Field, price int32, pos uint64, dst []Hit) []Hit {
	ls := s.ladders[uint64(sym)<<2|uint64(field)]
	if ls == nil {
		return dst
	}
	if k := upKey(price); ls.up.first <= k {
		dst = s.reached(&ls.up, k, pos, dst)
	}
	if k := downKey(price); ls.down.first <= k {
		dst = s.reached(&ls.down, k, pos, dst)
	}
	return dst
}

func (s *Set) reached(l *ladder, key uint32, pos uint64, dst []Hit) []Hit {
	for _, c := range l.chunks {
		for _, r := range c {
			if uint32(r>>32) > key {
				return dst
			}
			i := uint32(r)
			if s.slots[i].after >= pos {
				continue
			}
			dst = append(dst, Hit{Slot: i, Rearm: s.slots[i].flags&armed == 0})
		}
	}
	return dst
}

// Def returns slot i's alert (from a Hit).
func (s *Set) Def(i uint32) Def { return s.def(i) }

func (s *Set) def(i uint32) Def {
	sl := &s.slots[i]
	return Def{Owner: s.owners[sl.owner].name, ID: string(s.id(i)), Sym: sl.sym, Field: sl.field, Op: sl.op, Value: sl.value, Repeat: sl.flags&repeat != 0, Hyst: sl.hyst, After: sl.after}
}

// Get returns the owner's alert id and whether it is armed.
func (s *Set) Get(ownerName, id string) (d Def, isArmed, ok bool) {
	o, ok := s.ownerIndex(ownerName, false)
	var i uint32
	if ok {
		i, ok = s.lookup(o, id)
	}
	if !ok {
		return Def{}, false, false
	}
	return s.def(i), s.slots[i].flags&armed != 0, true
}

// Fire records that the owner's alert f.ID fired (f's Sym, Field are the
// alert's): a plain alert goes, a repeat one waits to be re-armed. It
// returns f as logged, with N and Gone set.
func (s *Set) Fire(ownerName string, f Fired) (Fired, error) {
	i, ok := s.find(ownerName, f.ID)
	if !ok || s.slots[i].flags&armed == 0 {
		return f, fmt.Errorf("%w: no armed alert %s of %s", ErrUnknown, f.ID, ownerName)
	}
	return s.FireSlot(i, f), nil
}

// FireSlot is Fire of the alert a Hit found (f.ID is not read).
func (s *Set) FireSlot(i uint32, f Fired) Fired {
	sl := &s.slots[i]
	own := &s.owners[sl.owner]
	f.Sym, f.Field, f.After = sl.sym, sl.field, sl.after
	if sl.flags&repeat == 0 {
		f.Gone = true
		s.drop(i)
	} else {
		s.place(i, false)
		sl.flags &^= armed
		s.place(i, true)
	}
	f.N = own.fires + 1
	s.logFire(own, f)
	return f
}

func (s *Set) find(ownerName, id string) (uint32, bool) {
	o, ok := s.ownerIndex(ownerName, false)
	if !ok {
		return 0, false
	}
	return s.lookup(o, id)
}

func (s *Set) logFire(own *owner, f Fired) {
	own.fires = f.N
	if len(own.log) < s.keepLog {
		own.log = append(own.log, f)
		return
	}
	own.dropped = own.log[own.logAt].N
	own.log[own.logAt] = f
	own.logAt = (own.logAt + 1) % len(own.log)
}

// eachLogged calls fn for the owner's kept fires, oldest first.
func (own *owner) eachLogged(fn func(f Fired)) {
	for k := range own.log {
		fn(own.log[(own.logAt+k)%len(own.log)])
	}
}

// Rearm arms the owner's waiting repeat alert id again.
func (s *Set) Rearm(ownerName, id string) error {
	i, ok := s.find(ownerName, id)
	if !ok || s.slots[i].flags&(armed|repeat) != repeat {
		return fmt.Errorf("%w: no waiting alert %s of %s", ErrUnknown, id, ownerName)
	}
	s.RearmSlot(i)
	return nil
}

// RearmSlot is Rearm of the alert a Hit found.
func (s *Set) RearmSlot(i uint32) {
	s.place(i, false)
	s.slots[i].flags |= armed
	s.place(i, true)
}

// Count is how many alerts the owner has standing.
func (s *Set) Count(ownerName string) int {
	if o, ok := s.ownerIndex(ownerName, false); ok {
		return len(s.owners[o].slots)
	}
	return 0
}

// Alerts calls fn for each of the owner's standing alerts.
func (s *Set) Alerts(ownerName string, fn func(d Def, isArmed bool)) {
	o, ok := s.ownerIndex(ownerName, false)
	if !ok {
		return
	}
	for _, i := range s.owners[o].slots {
		fn(s.def(i), s.slots[i].flags&armed != 0)
	}
}

// FiredAfter calls fn for each of the owner's kept fires numbered after n;
// lost says fires after n are no longer kept (fn sees what is).
func (s *Set) FiredAfter(ownerName string, n uint64, fn func(f Fired)) (lost bool) {
	o, ok := s.ownerIndex(ownerName, false)
	if !ok {
		return false
	}
	own := &s.owners[o]
	own.eachLogged(func(f Fired) {
		if f.N > n {
			fn(f)
		}
	})
	return own.dropped > n
}

// LastFire is the N of the owner's last fire (0: none).
func (s *Set) LastFire(ownerName string) uint64 {
	if o, ok := s.ownerIndex(ownerName, false); ok {
		return s.owners[o].fires
	}
	return 0
}

// EachOwner calls fn with each owner and its count of standing alerts.
func (s *Set) EachOwner(fn func(owner string, n int)) {
	for i := range s.owners {
		fn(s.owners[i].name, len(s.owners[i].slots))
	}
}

// Each calls fn for every standing alert, in slot order.
func (s *Set) Each(fn func(d Def, isArmed bool)) {
	for i := range s.slots {
		if s.slots[i].flags&used != 0 {
			fn(s.def(uint32(i)), s.slots[i].flags&armed != 0)
		}
	}
}

// EachFired calls fn for every kept fire, owner by owner, oldest first.
func (s *Set) EachFired(fn func(owner string, f Fired)) {
	for i := range s.owners {
		s.owners[i].eachLogged(func(f Fired) { fn(s.owners[i].name, f) })
	}
}

// LoadFired logs a fire from a snapshot (EachFired's): the owner's fires
// go on from f.N.
func (s *Set) LoadFired(ownerName string, f Fired) {
	o, _ := s.ownerIndex(ownerName, true)
	own := &s.owners[o]
	if f.N <= own.fires {
		return
	}
	if own.fires < f.N-1 && len(own.log) == 0 {
		own.dropped = f.N - 1 // the snapshot kept fewer than the owner had
	}
	s.logFire(own, f)
}

// Clear empties the set (a snapshot replaces it).
func (s *Set) Clear() {
	*s = *NewSet(s.ladders != nil, s.keepLog)
}
