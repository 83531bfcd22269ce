package cluster

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync/atomic"

	"tickrelay/directory"
	"tickrelay/wire"
)

// Policy is how a client picks its child among the live ones.
type Policy string

const (
	// Sticky ranks the children by rendezvous hashing of the client's id
	// (directory.Rank) and follows the set: a child that joins takes the
	// clients that now rank it first (about 1/n), one that leaves gives
	// away only its own.
	Sticky Policy = "sticky"
	// LeastLoaded picks the child with the fewest clients and, while it
	// stays, moves off a child loaded well above the mean (balance).
	LeastLoaded Policy = "least-loaded"
	// RoundRobin takes the children in turn: each new client (in this
	// process) and each move starts at the next.
	RoundRobin Policy = "round-robin"
	// Random picks uniformly.
	Random Policy = "random"
)

// ParsePolicy parses a policy name.
func ParsePolicy(s string) (Policy, error) {
	switch p := Policy(s); p {
	case Sticky, LeastLoaded, RoundRobin, Random:
		return p, nil
	}
	return "", fmt.Errorf("cluster: unknown policy %q (sticky, least-loaded, round-robin or random)", s)
}

// rrNext spreads round-robin clients of one process over the children.
var rrNext atomic.Uint64

// rank orders the children that take clients (up, and not in skip) by
// preference under p for the client id; cur is the child it is on ("":
// none), which round-robin steps past.
func rank(p Policy, id string, set []wire.ChildInfo, cur string, skip func(wire.ChildInfo) bool) []wire.ChildInfo {
	live := make([]wire.ChildInfo, 0, len(set))
	for _, c := range set {
		if c.State == wire.ChildUp && (skip == nil || !skip(c)) {
			live = append(live, c)
		}
	}
	switch p {
	case Sticky:
		return directory.Rank(id, live)
	case LeastLoaded:
		rand.Shuffle(len(live), func(i, j int) { live[i], live[j] = live[j], live[i] }) // ties at random
		slices.SortStableFunc(live, func(a, b wire.ChildInfo) int { return int(a.Load.Clients) - int(b.Load.Clients) })
	case RoundRobin:
		if len(live) > 0 {
			start := int(rrNext.Add(1) % uint64(len(live)))
			if i := slices.IndexFunc(live, func(c wire.ChildInfo) bool { return c.Addr == cur }); i >= 0 {
				start = (i + 1) % len(live)
			}
			live = append(live[start:], live[:start]...)
		}
	case Random:
		rand.Shuffle(len(live), func(i, j int) { live[i], live[j] = live[j], live[i] })
	}
	return live
}

// balanceTolerance: least-loaded leaves a child only when its clients
// pass the mean by this fraction (and by more than one client), so the
// spread settles instead of churning. Only clients above the mean move,
// so with n children the lowest may end (n-1) x this below it: 3% keeps
// three children within ±6%.
const balanceTolerance = 0.03

// balance decides, for a least-loaded client on cur, whether to leave it
// for a less loaded child: with probability excess/load, so that on
// average the excess alone moves, to a child drawn by its deficit. u and
// v are uniform draws in [0, 1).
func balance(set []wire.ChildInfo, cur string, u, v float64) (to wire.ChildInfo, ok bool) {
	var total float64
	var here *wire.ChildInfo
	live := 0
	for i, c := range set {
		if c.State != wire.ChildUp {
			continue
		}
		live++
		total += float64(c.Load.Clients)
		if c.Addr == cur {
			here = &set[i]
		}
	}
	if here == nil || live < 2 {
		return wire.ChildInfo{}, false
	}
	mean := total / float64(live)
	load := float64(here.Load.Clients)
	if load-mean <= max(1, mean*balanceTolerance) || u >= (load-mean)/load {
		return wire.ChildInfo{}, false
	}
	var deficit float64
	for _, c := range set {
		if c.State == wire.ChildUp && float64(c.Load.Clients) < mean {
			deficit += mean - float64(c.Load.Clients)
		}
	}
	pick := v * deficit
	for _, c := range set {
		if c.State == wire.ChildUp && float64(c.Load.Clients) < mean {
			if pick -= mean - float64(c.Load.Clients); pick < 0 {
				return c, true
			}
		}
	}
	return wire.ChildInfo{}, false
}
