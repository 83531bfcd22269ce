package main

import (
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"tickrelay/feed"
	"tickrelay/internal/daemontest"
)

// TestSystemdNotify: the root daemon, under a fake systemd (a notify
// socket of the test's, WatchdogSec 400ms), says READY=1 once it serves,
// STATUS= lines with its head, and WATCHDOG=1 while its feed session
// moves; when the exchange's address answers a logon with silence (the
// session hangs in it), the pings stop; SIGTERM says STOPPING=1. A child
// says READY=1 with its STATUS too.
func TestSystemdNotify(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type msg struct {
		at   time.Time
		text string
	}
	got := make(chan msg, 10000)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := ln.Read(buf)
			if err != nil {
				return
			}
			got <- msg{time.Now(), string(buf[:n])}
		}
	}()
	cfg := feed.DefaultConfig()
	cfg.Addr, cfg.Rate, cfg.Symbols, cfg.Heartbeat, cfg.Logger = "127.0.0.1:0", 1000, 10, 200*time.Millisecond, testLogger()
	ex, err := feed.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	stopEx := daemontest.Start(t, "exchange", ex)
	<-ex.Ready()
	exAddr := ex.Addr().String()
	t.Setenv("NOTIFY_SOCKET", sock)
	t.Setenv("WATCHDOG_USEC", "400000")
	relayAddr := freeAddr(t)
	root := startProc(t, "root", rootArgs(ex.Addr(), relayAddr, "", filepath.Join(t.TempDir(), "j"))...)
	seen := map[string]bool{}
	pings := 0
	wait := func(what string, d time.Duration, ok func(m msg) bool) msg {
		t.Helper()
		end := time.After(d)
		for {
			select {
			case m := <-got:
				if m.text == "WATCHDOG=1" {
					pings++
				}
				seen[strings.SplitN(m.text, "=", 2)[0]] = true
				if ok(m) {
					return m
				}
			case <-end:
				t.Fatalf("no %s within %v (seen %v)", what, d, seen)
			}
		}
	}
	wait("READY=1", 10*time.Second, func(m msg) bool { return strings.HasPrefix(m.text, "READY=1") })
	wait("STATUS with a head", 10*time.Second, func(m msg) bool {
		return strings.HasPrefix(m.text, "STATUS=epoch ") && !strings.Contains(m.text, "head seq 0,")
	})
	wait("3 watchdog pings", 5*time.Second, func(msg) bool { return pings >= 3 })
	// A child on it says READY=1 with its own STATUS.
	kid := startProc(t, "child", "child", "-root", relayAddr, "-addr", "127.0.0.1:0", "-name", "n", "-loops", "1")
	wait("the child's READY=1", 10*time.Second, func(m msg) bool {
		return strings.HasPrefix(m.text, "READY=1\nSTATUS=0 clients, epoch ")
	})
	kid.stop(t, 10*time.Second)

	// The exchange goes; its address answers with silence: the root's
	// session hangs in the logon (for its 3 s dial timeout).
	stopEx()
	var silent net.Listener
	waitFor(t, "the exchange's address free", 5*time.Second, func() bool {
		silent, err = net.Listen("tcp", exAddr)
		return err == nil
	})
	defer silent.Close()
	go func() {
		var held []net.Conn // open and mute
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	// The last ping before the hang, then none for over a second.
	var last time.Time
	end := time.After(2500 * time.Millisecond)
	for done := false; !done; {
		select {
		case m := <-got:
			if m.text == "WATCHDOG=1" {
				last = m.at
			}
		case <-end:
			done = true
		}
	}
	if time.Since(last) < time.Second {
		t.Fatalf("watchdog pings went on while the feed session hung (last %v ago)", time.Since(last))
	}
	root.signal(syscall.SIGTERM)
	wait("STOPPING=1", 10*time.Second, func(m msg) bool { return m.text == "STOPPING=1" })
}
