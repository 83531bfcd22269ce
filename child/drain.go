package child

import (
	"context"
	"sync"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// Lame-duck drain: the child announces itself draining (the roots put it
// in the directory so, and sticky clients rank it out), tells its clients
// "INFO DRAIN <grace>", turns new connections away with ERR BUSY naming
// another child, and keeps relaying until its clients have moved or the
// grace is over. Run drains before it stops when Config.DrainGrace is set
// (SIGTERM on the daemon); Drain does it on demand (POST /drain).

// Drain starts the drain once and waits until no client is left, grace
// passes, or ctx ends. It reports whether every client left.
func (ch *Child) Drain(ctx context.Context, grace time.Duration) bool {
	ch.drainOnce.Do(func() {
		ch.draining.Store(true)
		ch.metrics.Drains.Inc()
		ch.log.Info("draining: clients are told to move", "grace", grace, "clients", metricValue(ch.metrics.Clients))
		close(ch.drainNow) // announce at once on every line
		var wg sync.WaitGroup
		for _, l := range *ch.srv.loops.Load() {
			wg.Add(1)
			err := l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
				defer wg.Done()
				l.sess.Drain(grace)
				return nil
			}))
			if err != nil {
				wg.Done()
			}
		}
		wg.Wait()
	})
	t := time.NewTimer(grace)
	defer t.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for metricValue(ch.metrics.Clients) > 0 {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			ch.log.Warn("drain grace over; closing the clients left", "clients", metricValue(ch.metrics.Clients))
			return false
		case <-tick.C:
		}
	}
	ch.log.Info("drained: every client left")
	return true
}

// Draining reports whether the child is draining.
func (ch *Child) Draining() bool { return ch.draining.Load() }
