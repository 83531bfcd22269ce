package natspeer

import (
	"bufio"
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestLoopbackOnly(t *testing.T) {
	for _, a := range []string{"0.0.0.0:4222", "10.0.0.1:1", ":4222x", "127.0.0.1:70000"} {
		if _, _, err := splitLoopback(a); err == nil {
			t.Errorf("%q accepted", a)
		}
	}
	if h, p, err := splitLoopback(":0"); err != nil || h != "127.0.0.1" || p != 0 {
		t.Fatalf("%s %d %v", h, p, err)
	}
	if err := Main(t.Context(), []string{"-addr", "0.0.0.0:0"}, io.Discard); err == nil {
		t.Fatal("Main bound a non-loopback address")
	}
	if err := Main(t.Context(), []string{"extra"}, io.Discard); err == nil {
		t.Fatal("Main took a stray argument")
	}
}

// TestMainServesNATS starts the peer as the perf sweep does and speaks
// NATS to it over a real socket: INFO, a subscription, a published message
// coming back; then it stops with its context.
func TestMainServesNATS(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- Main(ctx, []string{"-addr", "127.0.0.1:0"}, pw) }()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), ReadyPrefix)
	if !ok {
		t.Fatalf("first line %q, want %q+addr", line, ReadyPrefix)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	if l, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(l, "INFO ") {
		t.Fatalf("greeting %q %v", l, err)
	}
	io.WriteString(c, "CONNECT {\"verbose\":false}\r\nSUB t.00005 1\r\nPUB t.00005 5\r\nhello\r\nPING\r\n")
	var got []string
	for len(got) < 3 {
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
		got = append(got, strings.TrimSpace(l))
	}
	if want := []string{"MSG t.00005 1 5", "hello", "PONG"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q, want %q", got, want)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
