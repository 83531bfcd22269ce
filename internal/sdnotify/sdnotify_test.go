package sdnotify

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// listen is a fake systemd: the notify socket and what arrives on it.
func listen(t *testing.T) (string, <-chan string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ch := make(chan string, 1000)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			ch <- string(buf[:n])
		}
	}()
	return path, ch
}

func TestNotifier(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if FromEnv() != nil || (*Notifier)(nil).Send("READY=1") != nil {
		t.Fatal("a notifier without NOTIFY_SOCKET")
	}
	path, got := listen(t)
	t.Setenv("NOTIFY_SOCKET", path)
	t.Setenv("WATCHDOG_USEC", "100000")
	n := FromEnv()
	if err := n.Send("READY=1"); err != nil || <-got != "READY=1" {
		t.Fatal(err)
	}
	var healthy atomic.Bool
	healthy.Store(true)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { n.Run(ctx, 20*time.Millisecond, func() string { return "head 5" }, healthy.Load); close(done) }()
	count := func(d time.Duration) (pings, status int) {
		end := time.After(d)
		for {
			select {
			case m := <-got:
				switch {
				case m == "WATCHDOG=1":
					pings++
				case strings.HasPrefix(m, "STATUS=head 5"):
					status++
				}
			case <-end:
				return
			}
		}
	}
	if p, s := count(300 * time.Millisecond); p < 3 || s < 3 {
		t.Fatalf("healthy: %d pings, %d statuses in 300ms", p, s)
	}
	healthy.Store(false)
	count(60 * time.Millisecond) // what was on its way
	if p, s := count(300 * time.Millisecond); p != 0 || s < 3 {
		t.Fatalf("stalled: %d pings (want 0), %d statuses", p, s)
	}
	cancel()
	<-done
	deadline := time.After(time.Second)
	for {
		select {
		case m := <-got:
			if m == "STOPPING=1" {
				return
			}
		case <-deadline:
			t.Fatal("no STOPPING=1")
		}
	}
}
