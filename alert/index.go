package alert

// An index finds a slot by (owner, id): open addressing with linear
// probing over slot numbers (+1; 0 is empty), about 7 bytes an alert
// where a Go map takes ~25, and nothing for the GC to scan. Entries are
// compared by their slot's owner and id, so hash collisions cost a probe,
// never a wrong answer.
type index struct {
	t []uint32
	n int
}

func (x *index) home(s *Set, slot uint32) uint64 {
	return keyOf(s.slots[slot].owner, string(s.id(slot))) & uint64(len(x.t)-1)
}

func (x *index) get(s *Set, o uint32, id string) (uint32, bool) {
	if len(x.t) == 0 {
		return 0, false
	}
	mask := uint64(len(x.t) - 1)
	for i := keyOf(o, id) & mask; ; i = (i + 1) & mask {
		e := x.t[i]
		if e == 0 {
			return 0, false
		}
		if sl := &s.slots[e-1]; sl.owner == o && string(s.id(e-1)) == id {
			return e - 1, true
		}
	}
}

// put adds slot (its owner and id must not be in the index).
func (x *index) put(s *Set, slot uint32) {
	if 4*(x.n+1) > 3*len(x.t) {
		x.grow(s)
	}
	mask := uint64(len(x.t) - 1)
	i := x.home(s, slot)
	for x.t[i] != 0 {
		i = (i + 1) & mask
	}
	x.t[i] = slot + 1
	x.n++
}

func (x *index) grow(s *Set) {
	old := x.t
	x.t, x.n = make([]uint32, max(2*len(old), 64)), 0
	for _, e := range old {
		if e != 0 {
			x.put(s, e-1)
		}
	}
}

// del removes slot, shifting back the entries after it that would no
// longer be found (no tombstones: probes stay short after churn).
func (x *index) del(s *Set, slot uint32) {
	mask := uint64(len(x.t) - 1)
	i := x.home(s, slot)
	for x.t[i] != slot+1 {
		if x.t[i] == 0 {
			return
		}
		i = (i + 1) & mask
	}
	for j := (i + 1) & mask; x.t[j] != 0; j = (j + 1) & mask {
		k := x.home(s, x.t[j]-1)
		// Move t[j] into the hole at i unless its home lies cyclically in (i, j].
		if (j > i && (k <= i || k > j)) || (j < i && k <= i && k > j) {
			x.t[i], i = x.t[j], j
		}
	}
	x.t[i] = 0
	x.n--
}
