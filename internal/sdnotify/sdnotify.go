// Package sdnotify speaks systemd's notify protocol: datagrams of
// "KEY=value" lines to the unix socket in $NOTIFY_SOCKET (READY=1,
// STATUS=..., WATCHDOG=1, STOPPING=1). Without $NOTIFY_SOCKET (not run
// by systemd with Type=notify) every call does nothing.
package sdnotify

import (
	"context"
	"net"
	"os"
	"strconv"
	"time"
)

// Notifier sends to one notify socket; a nil *Notifier sends nothing.
type Notifier struct {
	addr *net.UnixAddr
}

// FromEnv returns the notifier of $NOTIFY_SOCKET ("@name" is an abstract
// socket), or nil when it is unset.
func FromEnv() *Notifier {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if path[0] == '@' {
		path = "\x00" + path[1:]
	}
	return &Notifier{addr: &net.UnixAddr{Name: path, Net: "unixgram"}}
}

// Send sends one state ("READY=1", "STATUS=serving 3 children").
func (n *Notifier) Send(state string) error {
	if n == nil {
		return nil
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte(state))
	return err
}

// WatchdogInterval is systemd's WatchdogSec for this process
// ($WATCHDOG_USEC, when $WATCHDOG_PID is unset or this pid), 0 if none.
func WatchdogInterval() time.Duration {
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0
	}
	us, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || us <= 0 {
		return 0
	}
	return time.Duration(us) * time.Microsecond
}

// Run serves a daemon's notifications until ctx ends: every period
// STATUS=status() and, while healthy() holds, WATCHDOG=1 (every half of
// the watchdog interval, when systemd set one); STOPPING=1 at the end. A
// daemon that stops making progress stops the pings, and systemd
// restarts it.
func (n *Notifier) Run(ctx context.Context, period time.Duration, status func() string, healthy func() bool) {
	if n == nil {
		return
	}
	wd := WatchdogInterval()
	tick := period
	if wd > 0 {
		tick = min(tick, wd/2)
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	lastStatus := time.Time{}
	for {
		now := time.Now()
		if wd > 0 && healthy() {
			n.Send("WATCHDOG=1")
		}
		if now.Sub(lastStatus) >= period {
			n.Send("STATUS=" + status())
			lastStatus = now
		}
		select {
		case <-ctx.Done():
			n.Send("STOPPING=1")
			return
		case <-t.C:
		}
	}
}
