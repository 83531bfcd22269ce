package client

import (
	"bytes"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"tickrelay/wire"
)

// loopConn is a net.Conn whose reads replay data forever.
type loopConn struct {
	net.Conn
	data []byte
	off  int
}

func (c *loopConn) Read(p []byte) (int, error) {
	n := copy(p, c.data[c.off:])
	c.off = (c.off + n) % len(c.data)
	return n, nil
}

func frames(n int) []byte {
	var out []byte
	for i := 1; i <= n; i++ {
		m := wire.Msg{Type: wire.TypeTrade, Security: uint32(i % 7), TradeID: uint32(i), Price: 12345, Qty: 100, TradeTime: uint64(i)}
		out = wire.AppendTextFrame(out, uint64(i), &m, wire.Stamps{ExchSend: 1, RootRecv: 2, RootSend: 3, ChildRecv: 4, ChildSend: 5})
	}
	return out
}

func TestNextKinds(t *testing.T) {
	data := append(frames(1), "OK SUB 00001 7 3\nERR BADCMD unknown command\nPONG\nTIME 1 2 3\nRESET 4 1 3 99\n"...)
	c := New(&loopConn{data: data})
	ev, err := c.Next()
	if err != nil || ev.Kind != wire.LineFrame || ev.Seq != 1 || ev.Msg.TradeID != 1 || ev.Stamps.ChildSend != 5 || ev.Recv == 0 {
		t.Fatalf("frame: %v %+v", err, ev)
	}
	ev, _ = c.Next()
	if v, s, seq, err := ev.OK(); ev.Kind != wire.LineOK || v != "SUB" || s != "00001" || seq != 7 || err != nil || ev.Epoch() != 3 {
		t.Fatalf("ok: %q", ev.Line)
	}
	ev, _ = c.Next()
	if code, reason := ev.Err(); ev.Kind != wire.LineErr || code != "BADCMD" || reason != "unknown command" {
		t.Fatalf("err: %q", ev.Line)
	}
	if ev, _ = c.Next(); ev.Kind != wire.LinePong {
		t.Fatalf("pong: %q", ev.Line)
	}
	ev, _ = c.Next()
	if t0, t1, t2, err := ev.Time(); ev.Kind != wire.LineTime || t0 != 1 || t1 != 2 || t2 != 3 || err != nil {
		t.Fatalf("time: %q", ev.Line)
	}
	ev, _ = c.Next()
	if r, err := ev.Reset(); ev.Kind != wire.LineReset || err != nil || r != (wire.ResetLine{Epoch: 4, Seq: 1, Prev: 3, PrevLast: 99}) {
		t.Fatalf("reset: %q %v", ev.Line, err)
	}
}

// recConn records writes.
type recConn struct {
	net.Conn
	buf bytes.Buffer
}

func (c *recConn) Write(p []byte) (int, error) { return c.buf.Write(p) }

func TestCommandsSplitLines(t *testing.T) {
	rc := &recConn{}
	c := New(rc)
	var syms []string
	for i := 0; i < 2000; i++ {
		syms = append(syms, string(wire.AppendSymbol(nil, uint32(i))))
	}
	if err := c.Sub(syms...); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(rc.buf.String(), "\n"), "\n")
	got := 0
	for _, l := range lines {
		if len(l)+1 > wire.MaxLineLen {
			t.Fatalf("line of %d bytes", len(l)+1)
		}
		cmd, err := wire.ParseCommand([]byte(l), nil)
		if err != nil || cmd.Verb != wire.CmdSub {
			t.Fatalf("%q: %v", l, err)
		}
		got += len(cmd.Symbols)
	}
	if got != 2000 || len(lines) < 2 {
		t.Fatalf("%d symbols over %d lines", got, len(lines))
	}
	rc.buf.Reset()
	c.Resume(42, "00001", "*")
	c.ResumeEpoch(7, 42, "00001")
	c.Ping()
	c.Unsub("00001")
	if s := rc.buf.String(); s != "RESUME 42 00001 *\nRESUME 7:42 00001\nPING\nUNSUB 00001\n" {
		t.Fatalf("%q", s)
	}
	rc.buf.Reset()
	before := time.Now().UnixNano()
	c.Time()
	cmd, err := wire.ParseCommand(bytes.TrimSuffix(rc.buf.Bytes(), []byte("\n")), nil)
	if err != nil || cmd.Verb != wire.CmdTime || cmd.T0 < before {
		t.Fatalf("%q %v", rc.buf.String(), err)
	}
}

// BenchmarkNext is the client's per-frame cost: read a line, decode it.
func BenchmarkNext(b *testing.B) {
	data := frames(1000)
	c := New(&loopConn{data: data})
	b.ReportAllocs()
	b.SetBytes(int64(len(data) / 1000))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ev, err := c.Next()
		if err != nil || ev.Kind != wire.LineFrame {
			b.Fatal(err, string(ev.Line))
		}
	}
}

// TestNextAfterDeadline: a read deadline that cuts a line in two loses
// nothing; Next goes on with the whole line once the rest arrives.
func TestNextAfterDeadline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	data := frames(3)
	cut := bytes.IndexByte(data, '\n') + 40 // inside the second frame
	rest := make(chan struct{})
	go func() {
		s, err := ln.Accept()
		if err != nil {
			return
		}
		defer s.Close()
		s.Write(data[:cut])
		<-rest
		s.Write(data[cut:])
		time.Sleep(time.Second) // let the client read before the close
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c := New(nc)
	if ev, err := c.Next(); err != nil || ev.Seq != 1 {
		t.Fatalf("first frame: %v", err)
	}
	nc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := c.Next(); err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("want a timeout mid-line, got %v", err)
	}
	close(rest)
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for want := uint64(2); want <= 3; want++ {
		ev, err := c.Next()
		if err != nil || ev.Kind != wire.LineFrame || ev.Seq != want || ev.Msg.TradeID != uint32(want) {
			t.Fatalf("frame %d after the deadline: %v (%q)", want, err, ev.Line)
		}
	}
}

// TestDialWindow: the receive buffer asked for is the socket's (the kernel
// doubles it for its bookkeeping), not the autotuned megabytes.
func TestDialWindow(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, window := range []int{0, 4096} {
		c, err := DialWindow(t.Context(), ln.Addr().String(), window)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := c.Conn().(*net.TCPConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var got int
		var gerr error
		if err := raw.Control(func(fd uintptr) { got, gerr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF) }); err != nil || gerr != nil {
			t.Fatal(err, gerr)
		}
		c.Close()
		if small := got <= 2*4096; small != (window > 0) {
			t.Errorf("window %d: SO_RCVBUF %d", window, got)
		}
	}
}
