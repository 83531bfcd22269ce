package main

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"tickrelay/child"
	"tickrelay/internal/sdnotify"
	"tickrelay/root"
)

// Under systemd (Type=notify), a daemon says READY=1 once it serves,
// STATUS= what it is doing every few seconds, WATCHDOG=1 while it makes
// progress (WatchdogSec), and STOPPING=1 when it starts to drain.

// statusEvery is how often STATUS= is sent.
const statusEvery = 5 * time.Second

// notifySystemd runs the notifications in a goroutine: READY=1 once ready
// is closed, then until ctx ends.
func notifySystemd(ctx context.Context, ready <-chan struct{}, status func() string, healthy func(watchdog time.Duration) bool) {
	n := sdnotify.FromEnv()
	if n == nil {
		return
	}
	wd := sdnotify.WatchdogInterval()
	go func() {
		select {
		case <-ready:
		case <-ctx.Done():
			return
		}
		n.Send("READY=1\nSTATUS=" + status())
		n.Run(ctx, statusEvery, status, func() bool { return healthy(wd) })
	}()
}

// notifyRoot: ready once the relay listens (the journal is open by then);
// healthy while the feed session moves.
func notifyRoot(ctx context.Context, r *root.Root) {
	notifySystemd(ctx, r.Ready(), func() string {
		return fmt.Sprintf("epoch %d, head seq %d, %d children", r.Epoch(), r.Head(), int(gaugeValue(r.Metrics().Children)))
	}, func(wd time.Duration) bool { return !r.Stalled(wd / 2) })
}

// notifyChild: ready once it listens for clients; healthy while every
// event loop runs tasks.
func notifyChild(ctx context.Context, ch *child.Child) {
	notifySystemd(ctx, ch.Ready(), func() string {
		s := fmt.Sprintf("%d clients, epoch %d, last seq %d", int(gaugeValue(ch.Metrics().Clients)), ch.Epoch(), ch.LastSeq())
		if ch.Draining() {
			s += ", draining"
		}
		return s
	}, func(wd time.Duration) bool { return ch.LoopsAlive(wd / 4) })
}

func gaugeValue(g prometheus.Gauge) float64 {
	var m dto.Metric
	if g.Write(&m) != nil {
		return 0
	}
	return m.GetGauge().GetValue()
}
