// Package bound publishes a daemon's bound listen address once: the
// Ready/Addr pair every tickrelay daemon offers its callers and tests.
package bound

import "net"

// Listener is a daemon's bound listen address, published once: Ready is closed
// when Addr is valid. Its zero value is not usable; call New.
type Listener struct {
	ready chan struct{}
	addr  net.Addr
}

// New returns a listener address not published yet.
func New() *Listener { return &Listener{ready: make(chan struct{})} }

// Publish sets the address and closes Ready; it runs once.
func (p *Listener) Publish(a net.Addr) {
	p.addr = a
	close(p.ready)
}

// Ready is closed once the listener is bound (Addr is valid).
func (p *Listener) Ready() <-chan struct{} { return p.ready }

// Addr is the bound address (nil before Ready).
func (p *Listener) Addr() net.Addr {
	select {
	case <-p.ready:
		return p.addr
	default:
		return nil
	}
}
