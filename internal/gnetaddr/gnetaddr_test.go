package gnetaddr

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"
)

type bootOnly struct {
	gnet.BuiltinEventEngine
	eng  gnet.Engine
	addr chan *net.TCPAddr
	err  chan error
}

func (b *bootOnly) OnBoot(eng gnet.Engine) gnet.Action {
	b.eng = eng
	a, err := Bound(eng)
	b.addr <- a
	b.err <- err
	return gnet.None
}

// TestBound: an engine bound to port 0 reveals its real port, and a client
// dials it there.
func TestBound(t *testing.T) {
	h := &bootOnly{addr: make(chan *net.TCPAddr, 1), err: make(chan error, 1)}
	stopped := make(chan error, 1)
	go func() { stopped <- gnet.Run(h, "tcp://127.0.0.1:0") }()
	var a *net.TCPAddr
	select {
	case a = <-h.addr:
	case err := <-stopped:
		t.Fatalf("engine: %v", err)
	}
	if err := <-h.err; err != nil {
		t.Fatal(err)
	}
	if a.Port == 0 || !a.IP.Equal(net.IPv4(127, 0, 0, 1)) {
		t.Fatalf("bound %v", a)
	}
	c, err := net.DialTimeout("tcp", a.String(), time.Second)
	if err != nil {
		t.Fatalf("dial %v: %v", a, err)
	}
	c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.eng.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("engine: %v", err)
	}
}
