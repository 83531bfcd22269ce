package root

import (
	"context"
	"net"
	"syscall"
	"testing"
	"time"

	"tickrelay/wire"
)

// TestSlowChildLapped: a child that stops reading is not written past
// MaxOutbound; once the ring laps its cursor it gets SeqGone, while a
// reading child streams on undisturbed.
func TestSlowChildLapped(t *testing.T) {
	ex := newFakeExchange(t)
	cfg := testConfig(t, ex)
	cfg.RingSize = 1 << 14
	cfg.MaxBatchBytes, cfg.MaxOutbound, cfg.WriteBudget = 4096, 8192, 4096
	r, _ := startRoot(t, cfg)

	// The slow child: tiny receive buffer, reads nothing.
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	sc, err := d.DialContext(context.Background(), "tcp", r.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	slow := &fakeChild{t: t, c: sc, buf: make([]byte, 8<<20), next: 1}
	slow.send(wire.AppendHello(nil, wire.Hello{FromSeq: 1, Name: "slow"}))

	fast := dialChild(t, r.Addr(), 1)
	const total = 200000
	for n := uint64(2000); n <= total; n += 2000 {
		ex.publish(n)
		if err := fast.readTo(n, ioTimeout); err != nil {
			t.Fatal("fast child:", err)
		}
	}
	time.Sleep(100 * time.Millisecond) // a tick or two
	ex.publish(total + 1)
	if err := fast.readTo(total+1, ioTimeout); err != nil {
		t.Fatal("fast child:", err)
	}
	// Now read the slow child: items in order, then SeqGone.
	err = slow.readTo(total+1, ioTimeout)
	re, ok := err.(wire.RelayErr)
	if !ok || re.Code != wire.CodeSeqGone {
		t.Fatalf("slow child: %v at %d; want SeqGone", err, slow.next)
	}
	t.Logf("slow child lapped at %d (oldest %d)", slow.next, re.Seq)
}
