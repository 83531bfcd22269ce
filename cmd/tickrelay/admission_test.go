package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"tickrelay/child"
	"tickrelay/child/client"
	"tickrelay/child/cluster"
	"tickrelay/internal/daemontest"
	"tickrelay/wire"
)

// admissionChild runs a child on a live root with cfg's limits.
func admissionChild(t *testing.T, rootAddr net.Addr, edit func(*child.Config)) *child.Child {
	t.Helper()
	cfg := child.DefaultConfig()
	cfg.Roots, cfg.Addr, cfg.Name, cfg.Loops = []string{rootAddr.String()}, "127.0.0.1:0", "adm", 1
	cfg.BackoffMin, cfg.BackoffMax, cfg.Logger = 10*time.Millisecond, 200*time.Millisecond, testLogger()
	edit(&cfg)
	ch, err := child.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	daemontest.Start(t, "child", ch)
	<-ch.Ready()
	return ch
}

// dialFrom connects to addr from the local IP from and returns the
// client once the child answered a PING (admitted), or the first line it
// sent and that the connection then ended (refused).
func dialFrom(t *testing.T, addr, from string) (c *client.Client, refusal string) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	conn, err := d.DialContext(t.Context(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c = client.New(conn)
	c.Ping()
	conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	ev, err := c.Next()
	if err != nil {
		t.Fatalf("no answer from %s: %v", addr, err)
	}
	if ev.Kind == wire.LinePong {
		conn.SetReadDeadline(time.Time{})
		t.Cleanup(func() { c.Close() })
		return c, ""
	}
	line := string(ev.Line)
	if _, err := c.Next(); err == nil {
		t.Fatalf("refused with %q, yet the connection lives", line)
	}
	c.Close()
	return nil, line
}

// TestAdmission: each connection limit refuses with ERR BUSY and closes;
// a connection closed makes room again.
func TestAdmission(t *testing.T) {
	ex := startExchange(t, 200, 10, 0)
	r, _ := startRoot(t, newRootConfig(ex.Addr()))

	ch := admissionChild(t, r.Addr(), func(c *child.Config) { c.MaxClients = 3 })
	addr := ch.Addr().String()
	var held []*client.Client
	for range 3 {
		c, refused := dialFrom(t, addr, "127.0.0.1")
		if refused != "" {
			t.Fatalf("refused under the limit: %q", refused)
		}
		held = append(held, c)
	}
	if _, refused := dialFrom(t, addr, "127.0.0.1"); refused != "ERR BUSY retry=1000" {
		t.Fatalf("4th of max 3: %q", refused)
	}
	held[0].Close()
	waitFor(t, "the closed client's room", 3*time.Second, func() bool {
		c, refused := dialFrom(t, addr, "127.0.0.1")
		if c != nil {
			c.Close()
		}
		return refused == ""
	})
	if n := testutil.ToFloat64(ch.Metrics().Refused.WithLabelValues("max_clients")); n < 1 {
		t.Fatalf("refused_total{max_clients} %v", n)
	}

	ip := admissionChild(t, r.Addr(), func(c *child.Config) { c.MaxClientsPerIP = 2 })
	for range 2 {
		if _, refused := dialFrom(t, ip.Addr().String(), "127.0.0.1"); refused != "" {
			t.Fatalf("refused under the per-IP limit: %q", refused)
		}
	}
	if _, refused := dialFrom(t, ip.Addr().String(), "127.0.0.1"); refused != "ERR BUSY retry=1000" {
		t.Fatalf("3rd from one IP of max 2: %q", refused)
	}
	if _, refused := dialFrom(t, ip.Addr().String(), "127.0.0.2"); refused != "" {
		t.Fatalf("another IP refused: %q", refused)
	}

	rate := admissionChild(t, r.Addr(), func(c *child.Config) { c.AcceptRate, c.AcceptBurst = 2, 2 })
	for range 2 {
		if _, refused := dialFrom(t, rate.Addr().String(), "127.0.0.1"); refused != "" {
			t.Fatalf("refused within the accept burst: %q", refused)
		}
	}
	if _, refused := dialFrom(t, rate.Addr().String(), "127.0.0.1"); !strings.HasPrefix(refused, "ERR BUSY retry=") || refused == "ERR BUSY retry=0" {
		t.Fatalf("3rd connect at 2/s, burst 2: %q", refused)
	}

	// Draining: refused, and /healthz's answer says so.
	go ch.Drain(context.Background(), time.Second)
	waitFor(t, "draining", time.Second, ch.Draining)
	if _, refused := dialFrom(t, addr, "127.0.0.1"); refused != "ERR BUSY retry=1000" {
		t.Fatalf("draining: %q", refused)
	}
	if ok, why := ch.Health(); ok || why != "draining" {
		t.Fatalf("health while draining: %v %q", ok, why)
	}
}

// TestEntitlementsEndToEnd: a child with an entitlements file serves a
// SUB * client only its grant; rewriting the file revokes live (ERR
// DENIED sym revoked, then no frame of it); a file with an error, or gone,
// leaves the table in force.
func TestEntitlementsEndToEnd(t *testing.T) {
	ex := startExchange(t, 2000, 20, 0)
	r, _ := startRoot(t, newRootConfig(ex.Addr()))
	file := filepath.Join(t.TempDir(), "entitlements")
	write := func(s string) {
		// A new size or time: the watcher sees a change even within the
		// file system's time granularity.
		if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("alice alice-token-1 1-10\n")
	ch := admissionChild(t, r.Addr(), func(c *child.Config) { c.Entitlements, c.AuthTimeout = file, 300*time.Millisecond })
	addr := ch.Addr().String()

	c, err := client.Dial(t.Context(), addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SendLine("AUTH alice-token-1")
	c.Sub("*")
	codes := map[uint32]int{}
	var denied []string
	read := func(until func() bool) {
		t.Helper()
		c.Conn().SetReadDeadline(time.Now().Add(10 * time.Second))
		for !until() {
			ev, err := c.Next()
			if err != nil {
				t.Fatal(err)
			}
			switch ev.Kind {
			case wire.LineFrame:
				codes[ev.Msg.Security]++
			case wire.LineErr:
				denied = append(denied, string(ev.Line))
			}
		}
	}
	read(func() bool { return len(codes) == 10 && codes[1] > 20 })
	for code := range codes {
		if code > 10 {
			t.Fatalf("a frame of %d outside alice's 1..10", code)
		}
	}
	write("# fewer now\nalice alice-token-1 1-5\n")
	read(func() bool { return len(denied) == 5 })
	for i, want := range []string{"00006", "00007", "00008", "00009", "00010"} {
		if denied[i] != "ERR DENIED "+want+" revoked" {
			t.Fatalf("after the reload: %q", denied)
		}
	}
	clear(codes)
	read(func() bool { return codes[1] > 20 })
	for code := range codes {
		if code > 5 {
			t.Fatalf("a frame of %d after it was revoked", code)
		}
	}
	write("alice alice-token-1 1-5 nonsense\n")
	waitFor(t, "the bad file's reload error", 5*time.Second, func() bool {
		return testutil.ToFloat64(ch.Metrics().EntitlementReloads.WithLabelValues("error")) >= 1
	})
	os.Remove(file)
	clear(codes)
	read(func() bool { return codes[1] > 20 }) // the table in force stays: alice reads on
	if len(denied) != 5 {
		t.Fatalf("more ERR lines: %q", denied)
	}
	// The cluster client AUTHs on each connection; without a token it is
	// told why it cannot dial.
	if _, err := cluster.Dial(t.Context(), cluster.Config{Seeds: []string{addr}}); err == nil || !strings.Contains(err.Error(), "ERR AUTH") {
		t.Fatalf("a cluster client without a token: %v", err)
	}
	cc, err := cluster.Dial(t.Context(), cluster.Config{Seeds: []string{addr}, Token: "alice-token-1"})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	cc.Sub("3", "7")
	for oks := 0; oks < 2; {
		ev, err := cc.Next(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if ev.Kind == wire.LineErr && string(ev.Line) != "ERR DENIED 00007" {
			t.Fatalf("cluster client: %s", ev.Line)
		}
		if ev.Kind == wire.LineOK || ev.Kind == wire.LineErr {
			oks++
		}
	}
	// A late client still needs its token.
	late, err := client.Dial(t.Context(), addr)
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	late.Conn().SetReadDeadline(time.Now().Add(3 * time.Second))
	if ev, err := late.Next(); err != nil || string(ev.Line) != "ERR AUTH no AUTH within 300ms" {
		t.Fatalf("a client that sent nothing: %v %v", ev, err)
	}
}

// TestEntitlementsSIGHUP: the child daemon reloads its entitlements on
// SIGHUP (and does not die of it), naming file and line when it cannot.
func TestEntitlementsSIGHUP(t *testing.T) {
	ex := startExchange(t, 100, 10, 0)
	r, _ := startRoot(t, newRootConfig(ex.Addr()))
	file := filepath.Join(t.TempDir(), "ent")
	os.WriteFile(file, []byte("alice alice-token-1 *\n"), 0o600)
	k := startClusterChild(t, r.Addr(), "e", freeAddr(t), "-entitlements", file)
	os.WriteFile(file, []byte("alice alice-token-1 *\nbob\n"), 0o600)
	k.p.signal(syscall.SIGHUP)
	k.p.waitLog(t, 5*time.Second, "entitlements not reloaded", file+":2:")
	os.WriteFile(file, []byte("alice alice-token-1 *\nbob bob-token-22 1\n"), 0o600)
	for range 50 { // a storm of them: reloads one at a time, nothing else
		k.p.signal(syscall.SIGHUP)
	}
	k.p.waitLog(t, 5*time.Second, "entitlements reloaded", "tokens=2")
	c, err := client.Dial(t.Context(), k.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SendLine("AUTH bob-token-22")
	c.Conn().SetReadDeadline(time.Now().Add(3 * time.Second))
	if ev, err := c.Next(); err != nil || string(ev.Line) != "OK AUTH bob" {
		t.Fatalf("bob after the reloads: %v %v", ev, err)
	}
	k.p.stop(t, 10*time.Second)
}
