// Package gnetaddr learns the address a gnet engine's listener is bound to
// (the port when bound to :0): gnet keeps the resolved address to itself.
package gnetaddr

import (
	"fmt"
	"net"
	"os"

	"github.com/panjf2000/gnet/v2"
)

// Bound returns the listener's address, read from a dup of its fd (the
// listener is bound before OnBoot, where the daemons call it).
func Bound(eng gnet.Engine) (*net.TCPAddr, error) {
	fd, err := eng.Dup()
	if err != nil {
		return nil, fmt.Errorf("dup listener: %w", err)
	}
	f := os.NewFile(uintptr(fd), "gnet-listener")
	defer f.Close()
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("listener address: %w", err)
	}
	defer ln.Close()
	a, ok := ln.Addr().(*net.TCPAddr)
	if !ok {
		return nil, fmt.Errorf("listener address: not TCP: %v", ln.Addr())
	}
	return &net.TCPAddr{IP: append(net.IP(nil), a.IP...), Port: a.Port, Zone: a.Zone}, nil
}

// Published is a daemon's bound address, published once: Ready is closed
// when Addr is valid. Its zero value is not usable; call NewPublished.
type Published struct {
	ready chan struct{}
	addr  net.Addr
}

// NewPublished returns an address not published yet.
func NewPublished() *Published { return &Published{ready: make(chan struct{})} }

// Publish sets the address and closes Ready; it runs once.
func (p *Published) Publish(a net.Addr) {
	p.addr = a
	close(p.ready)
}

// Ready is closed once the listener is bound (Addr is valid).
func (p *Published) Ready() <-chan struct{} { return p.ready }

// Addr is the bound address (nil before Ready).
func (p *Published) Addr() net.Addr {
	select {
	case <-p.ready:
		return p.addr
	default:
		return nil
	}
}
