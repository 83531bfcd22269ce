package directory

import (
	"slices"

	"github.com/cespare/xxhash/v2"

	"tickrelay/wire"
)

// Rank orders the children that take clients (up, not draining) for the
// client id by rendezvous (highest-random-weight) hashing: each child's
// weight is xxhash(id, name), the highest first. A client takes the first
// and falls back along the rest. Adding a child moves only the clients
// that now rank it first (about 1/n of them); removing one moves only its
// own clients.
func Rank(id string, children []wire.ChildInfo) []wire.ChildInfo {
	type ranked struct {
		w uint64
		c wire.ChildInfo
	}
	rs := make([]ranked, 0, len(children))
	var d xxhash.Digest
	for _, c := range children {
		if c.State != wire.ChildUp {
			continue
		}
		d.Reset()
		d.WriteString(id)
		d.Write([]byte{0})
		d.WriteString(c.Name)
		rs = append(rs, ranked{d.Sum64(), c})
	}
	slices.SortFunc(rs, func(a, b ranked) int {
		switch {
		case a.w > b.w:
			return -1
		case a.w < b.w:
			return 1
		}
		return 0
	})
	out := make([]wire.ChildInfo, len(rs))
	for i, r := range rs {
		out[i] = r.c
	}
	return out
}
