package child

import (
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"tickrelay/child/frames"
	"tickrelay/directory"
	"tickrelay/wire"
)

// The child directory, child side: the child announces itself on every
// relay line (name, client address, state, load) each AnnounceEvery, and
// holds the union of what its roots send back (with an A/B pair, both
// views). Clients read it with CHILDREN and follow it with WATCH CHILDREN
// (child/session): the loops get each new line as a marker batch.
type dirUnion struct {
	mu    sync.Mutex
	views [][]wire.ChildInfo // per relay line, nil while it is down
	key   []wire.ChildInfo   // the set as last pushed, loads zeroed
	epoch uint64             // grows with each change of the set
}

// announcement is what the child says of itself now.
func (ch *Child) announcement(prev *announceLoad, now time.Time) wire.ChildInfo {
	frames := metricValue(ch.metrics.FramesOut)
	rate := uint32(0)
	if dt := now.Sub(prev.at).Seconds(); !prev.at.IsZero() && dt > 0 && frames >= prev.frames {
		rate = uint32(min((frames-prev.frames)/dt, 1<<32-1))
	}
	prev.at, prev.frames = now, frames
	backlog := ch.LastSeq() - min(ch.FlushedSeq(), ch.LastSeq())
	var subs int64
	for _, l := range *ch.srv.loops.Load() {
		subs += l.sess.Subs()
	}
	state := wire.ChildUp
	if ch.draining.Load() {
		state = wire.ChildDraining
	}
	return wire.ChildInfo{Name: ch.cfg.Name, Addr: ch.Addr().String(), State: state,
		Load: wire.ChildLoad{Clients: uint32(max(metricValue(ch.metrics.Clients), 0)), Subs: uint32(min(max(subs, 0), 1<<32-1)),
			Rate: rate, Backlog: uint32(min(backlog, 1<<32-1))}}
}

// announceLoad remembers the last announcement's counters, for rates.
type announceLoad struct {
	at     time.Time
	frames float64
}

// metricValue reads a counter or gauge.
func metricValue(m prometheus.Metric) float64 {
	var out dto.Metric
	if m.Write(&out) != nil {
		return 0
	}
	if c := out.GetCounter(); c != nil {
		return c.GetValue()
	}
	return out.GetGauge().GetValue()
}

// onDirectory takes a root's Directory frame from line l.
func (ch *Child) onDirectory(l *line, p []byte, log logger) {
	_, kids, err := wire.ParseDirectory(p)
	if err != nil {
		log.Warn("bad directory frame from the root; ignored", "root", l.addr, "err", err)
		return
	}
	ch.setView(l, kids)
}

// setView replaces line l's view (nil: the line is down) and, when the
// union changed, tells the loops.
func (ch *Child) setView(l *line, kids []wire.ChildInfo) {
	d := &ch.dir
	d.mu.Lock()
	if d.views == nil {
		d.views = make([][]wire.ChildInfo, len(ch.lines))
	}
	d.views[l.i] = kids
	union := directory.Union(d.views)
	key := make([]wire.ChildInfo, len(union))
	for i, c := range union {
		key[i] = wire.ChildInfo{Name: c.Name, Addr: c.Addr, State: c.State}
	}
	push := !slices.Equal(key, d.key)
	if push {
		d.key = key
		d.epoch++
		ch.metrics.DirectoryEpoch.Set(float64(d.epoch))
		ch.metrics.DirectoryChildren.Set(float64(len(union)))
	}
	// Published under the lock: markers of two lines must reach the
	// loops in the order their unions were made.
	b := frames.GetBatch()
	b.Children, b.Push, b.Last = wire.AppendChildrenLine(nil, d.epoch, union), push, ch.published.Load()
	ch.srv.publish(b)
	d.mu.Unlock()
}
