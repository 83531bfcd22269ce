// Package directory keeps the set of live children a root knows: what
// each announces on its relay line (name, client address, state, load),
// which ones are gone, and when the set is worth telling the children
// again. It is a pure core: the caller passes lines, times and
// announcements in, and sends what Publish returns.
package directory

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"tickrelay/wire"
)

// MissedAnnouncements is how many announcement periods a child may stay
// silent before it is taken as gone.
const MissedAnnouncements = 3

// Book is a root's directory. It is not safe for concurrent use.
type Book struct {
	period  time.Duration
	quietTo time.Time // a restarted root learns the set for a period before it publishes
	epoch   uint64
	members map[string]*member // by name
	changed bool               // the set, a state or an address changed since the last Publish
	loadAt  time.Time          // the last Publish for loads alone
}

type member struct {
	wire.ChildInfo
	line int       // the relay connection it announced on
	seen time.Time // its last announcement
}

// NewBook returns an empty book whose children announce every period,
// started at now.
func NewBook(period time.Duration, now time.Time) *Book {
	return &Book{period: period, quietTo: now.Add(period), members: map[string]*member{}}
}

// Announce records c, announced on relay line (a connection id) at now. A
// name already announced on another live line, or an address another name
// holds, is refused: the first keeps it, and the error says who.
func (b *Book) Announce(line int, c wire.ChildInfo, now time.Time) error {
	for _, m := range b.members {
		if m.Name != c.Name && m.Addr == c.Addr {
			return fmt.Errorf("directory: child %q announces address %s, which child %q holds", c.Name, c.Addr, m.Name)
		}
	}
	m := b.members[c.Name]
	switch {
	case m == nil:
		b.members[c.Name] = &member{ChildInfo: c, line: line, seen: now}
		b.changed = true
		return nil
	case m.line != line && now.Sub(m.seen) < MissedAnnouncements*b.period:
		return fmt.Errorf("directory: child name %q announced on two relay lines (%d, %d): keeping the first", c.Name, m.line, line)
	}
	if m.Addr != c.Addr || m.State != c.State {
		b.changed = true
	}
	m.ChildInfo, m.line, m.seen = c, line, now
	return nil
}

// LineDown forgets the children announced on line: its connection ended.
func (b *Book) LineDown(line int) {
	for name, m := range b.members {
		if m.line == line {
			delete(b.members, name)
			b.changed = true
		}
	}
}

// Expire forgets the children silent for MissedAnnouncements periods.
func (b *Book) Expire(now time.Time) {
	for name, m := range b.members {
		if now.Sub(m.seen) >= MissedAnnouncements*b.period {
			delete(b.members, name)
			b.changed = true
		}
	}
}

// Publish reports whether the children should be told the set now, and
// if so returns it with its new epoch: after a change to the set, a state
// or an address, or once a period for loads; never in the first period
// (a restarted root would otherwise publish a set still filling up).
func (b *Book) Publish(now time.Time) (epoch uint64, children []wire.ChildInfo, ok bool) {
	b.Expire(now)
	if now.Before(b.quietTo) || !b.changed && now.Sub(b.loadAt) < b.period {
		return 0, nil, false
	}
	b.changed, b.loadAt = false, now
	b.epoch++
	return b.epoch, b.Children(), true
}

// Epoch is the epoch of the last Publish (0: none yet).
func (b *Book) Epoch() uint64 { return b.epoch }

// Children is the set, by name.
func (b *Book) Children() []wire.ChildInfo {
	out := make([]wire.ChildInfo, 0, len(b.members))
	for _, m := range b.members {
		out = append(out, m.ChildInfo)
	}
	sortByName(out)
	return out
}

// Union merges the views of several roots (an A/B pair's, nil for a root
// that is not heard) by name, the first view's entry winning, by name.
func Union(views [][]wire.ChildInfo) []wire.ChildInfo {
	var out []wire.ChildInfo
	for _, v := range views {
		for _, c := range v {
			if !slices.ContainsFunc(out, func(o wire.ChildInfo) bool { return o.Name == c.Name }) {
				out = append(out, c)
			}
		}
	}
	sortByName(out)
	return out
}

func sortByName(cs []wire.ChildInfo) {
	slices.SortFunc(cs, func(x, y wire.ChildInfo) int { return strings.Compare(x.Name, y.Name) })
}
