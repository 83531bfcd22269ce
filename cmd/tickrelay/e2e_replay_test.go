package main

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"tickrelay/internal/daemontest"
	"tickrelay/replay"
)

// TestReplayRoundTrip: simulator -> replay record -> capture -> replay serve
// -> root -> child -> clients. What the clients get equals what the
// simulator sent, seq for seq.
func TestReplayRoundTrip(t *testing.T) {
	const total = 20_000
	ex := startExchange(t, 0, 200, total)
	path := filepath.Join(t.TempDir(), "day.trcap")

	rcfg := replay.DefaultRecordConfig()
	rcfg.Exchange, rcfg.Out, rcfg.FromSeq, rcfg.Max = ex.Addr().String(), path, 1, total
	rcfg.Logger = testLogger()
	rec, err := replay.NewRecorder(rcfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := rec.Run(ctx); err != nil {
		t.Fatalf("record: %v", err)
	}

	capture, err := replay.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer capture.Close()
	src, err := replay.NewCaptureSource(capture, replay.Select{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	scfg := replay.DefaultConfig()
	scfg.Addr, scfg.Source, scfg.Speed = "127.0.0.1:0", src, 20 // 20x the recorded pacing
	scfg.Logger = testLogger()
	player, err := replay.New(scfg)
	if err != nil {
		t.Fatal(err)
	}
	daemontest.Start(t, "replay", player)

	rt, _ := startRoot(t, newRootConfig(player.Addr()))
	ch, _ := startChild(t, rt.Addr(), "a", 1)
	addr := func() string { return ch.Addr().String() }

	clients := make([]*resumer, 8)
	errs := make([]error, len(clients))
	var wg sync.WaitGroup
	for i := range clients {
		clients[i] = &resumer{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = clients[i].run(t.Context(), ex, addr, total) // compared with the simulator's bytes
		}()
	}
	wg.Wait()
	for i, r := range clients {
		if errs[i] != nil {
			t.Fatalf("client %d: %v", i, errs[i])
		}
		if r.last != total || r.dupes != 0 || len(r.gaps) != 0 || r.bad != "" {
			t.Fatalf("client %d: last %d (want %d), %d duplicates, gaps %v, content: %s", i, r.last, total, r.dupes, r.gaps, r.bad)
		}
	}
}
