package child

import (
	"sync"
	"time"

	"tickrelay/internal/ratelimit"
	"tickrelay/wire"
)

// Admission: a connection beyond MaxClients, beyond MaxClientsPerIP from
// its address, or over the accept rate gets one line, "ERR BUSY
// retry=<ms> [try=<addr>]" (a less loaded child from the directory), and
// is closed by the event loop that accepted it: no session, no
// subscription, nothing for the other loops to do.

// Refusal reasons (tickrelay_child_refused_total{reason}).
const (
	refusedClients  = "max_clients"
	refusedIP       = "max_clients_per_ip"
	refusedRate     = "accept_rate"
	refusedDraining = "draining"
)

// admission counts the connections it took; its methods are safe from
// every event loop.
type admission struct {
	mu                   sync.Mutex
	maxClients, maxPerIP int
	clients              int
	perIP                map[string]int
	accepts              ratelimit.Bucket
}

func newAdmission(cfg Config, now int64) *admission {
	return &admission{maxClients: cfg.MaxClients, maxPerIP: cfg.MaxClientsPerIP, perIP: map[string]int{},
		accepts: ratelimit.New(cfg.AcceptRate, cfg.AcceptBurst, now)}
}

// admit decides on a connection from ip at now: "" takes it (release
// must follow its close), else the reason it is refused and when to retry.
func (a *admission) admit(ip string, now int64) (reason string, retry time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case a.maxClients > 0 && a.clients >= a.maxClients:
		return refusedClients, time.Second
	case a.maxPerIP > 0 && a.perIP[ip] >= a.maxPerIP:
		return refusedIP, time.Second
	}
	if ok, wait := a.accepts.Take(now); !ok {
		return refusedRate, max(wait, time.Millisecond)
	}
	a.clients++
	if a.maxPerIP > 0 {
		a.perIP[ip]++
	}
	return "", 0
}

// release forgets a connection admit took.
func (a *admission) release(ip string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.clients--
	if a.maxPerIP > 0 {
		if a.perIP[ip]--; a.perIP[ip] <= 0 {
			delete(a.perIP, ip)
		}
	}
}

// busyLine is what a refused connection gets: come back after retry, or
// go to the least loaded other child that takes clients.
func (ch *Child) busyLine(retry time.Duration) []byte {
	try := ""
	best := uint32(0)
	ch.dir.mu.Lock()
	for _, v := range ch.dir.views {
		for _, c := range v {
			if c.State == wire.ChildUp && c.Name != ch.cfg.Name && (try == "" || c.Load.Clients < best) {
				try, best = c.Addr, c.Load.Clients
			}
		}
	}
	ch.dir.mu.Unlock()
	return wire.AppendBusy(nil, retry, try)
}

// overloaded reports whether loop l's fan-out is ShedBacklog seqs behind.
func (ch *Child) overloaded(l *loop) bool {
	return ch.cfg.ShedBacklog > 0 && ch.LastSeq()-min(l.flushed.Load(), ch.LastSeq()) >= ch.cfg.ShedBacklog
}

// Health is what /healthz says: "ok", or why new clients should go
// elsewhere (draining, or a loop's fan-out behind).
func (ch *Child) Health() (ok bool, why string) {
	if ch.draining.Load() {
		return false, "draining"
	}
	for _, l := range *ch.srv.loops.Load() {
		if ch.overloaded(l) {
			return false, "degraded: an event loop's fan-out is over the shed backlog"
		}
	}
	return true, "ok"
}
