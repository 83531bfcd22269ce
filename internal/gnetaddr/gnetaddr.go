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
