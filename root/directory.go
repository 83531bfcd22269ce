package root

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"tickrelay/directory"
	"tickrelay/wire"
)

// The root's child directory: children announce themselves on their relay
// lines (wire.Announce, every AnnounceEvery); the book (package directory)
// keeps the live set, and the relay's ticker sends it to every child
// (wire.Directory) when it changes, with a growing epoch.
type dirState struct {
	mu    sync.Mutex
	book  *directory.Book
	lines atomic.Int64 // ids for the children's lines
}

func newDirState(period time.Duration) *dirState {
	return &dirState{book: directory.NewBook(period, time.Now())}
}

// announce takes a child's Announce; a bad one or a conflict is logged,
// and the child stays connected (it still gets the feed).
func (rl *relay) announce(ch *child, p []byte) {
	info, err := wire.ParseAnnounce(p)
	if err == nil {
		d := rl.dir
		d.mu.Lock()
		err = d.book.Announce(ch.line, info, time.Now())
		d.mu.Unlock()
	}
	if err != nil && !ch.badAnnounce {
		ch.badAnnounce = true // once per connection, not every second
		rl.r.m.BadAnnounces.Inc()
		ch.log.Warn("child announcement refused", "err", err)
	}
}

// lineDown forgets what ch announced.
func (rl *relay) lineDown(ch *child) {
	d := rl.dir
	d.mu.Lock()
	d.book.LineDown(ch.line)
	d.mu.Unlock()
}

// publishDirectory sends every child the set, when the book says so.
func (rl *relay) publishDirectory() {
	d := rl.dir
	d.mu.Lock()
	epoch, kids, ok := d.book.Publish(time.Now())
	var frame []byte
	if ok {
		var err error
		if frame, err = wire.AppendDirectory(nil, epoch, kids); err != nil {
			rl.r.log.Error("directory not sent", "err", err)
			ok = false
		}
	}
	d.mu.Unlock()
	if !ok {
		return
	}
	rl.r.m.DirectoryEpoch.Set(float64(epoch))
	rl.r.m.DirectoryChildren.Set(float64(len(kids)))
	for _, l := range *rl.loops.Load() {
		if l.nconns.Load() == 0 {
			continue
		}
		l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			for _, ch := range l.conns {
				if ch.state == stateRing || ch.state == stateStore {
					ch.write(frame)
				}
			}
			return nil
		}))
	}
}
