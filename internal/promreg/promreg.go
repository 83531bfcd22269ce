// Package promreg registers a daemon's Prometheus collectors as one group,
// so that a daemon stopped and started again in one process (tests, an
// embedding program) can take its series off the registry and put them back.
package promreg

import "github.com/prometheus/client_golang/prometheus"

// Group is collectors registered, and unregistered, together.
type Group struct {
	reg prometheus.Registerer
	cs  []prometheus.Collector
}

// Register registers every collector on reg; a nil reg registers nothing.
// On a failure it unregisters the ones already done and returns the error.
func Register(reg prometheus.Registerer, cs ...prometheus.Collector) (*Group, error) {
	g := &Group{reg: reg, cs: cs}
	if reg == nil {
		return g, nil
	}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			return nil, err
		}
	}
	return g, nil
}

// Unregister takes the group's collectors off the registry.
func (g *Group) Unregister() {
	if g == nil || g.reg == nil {
		return
	}
	for _, c := range g.cs {
		g.reg.Unregister(c)
	}
}
