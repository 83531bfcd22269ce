package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tickrelay/feed"
)

func TestReplayTimeFlag(t *testing.T) {
	var f timeFlag
	for in, want := range map[string]int64{
		"1767317400000000000":            1767317400000000000,
		"2026-01-02T01:30:00Z":           1767317400000000000,
		"2026-01-02T09:30:00.5+08:00":    1767317400500000000,
		"2026-01-02T01:30:00.000000001Z": 1767317400000000001,
	} {
		if err := f.Set(in); err != nil || f.ns != want {
			t.Errorf("Set(%q) = %d, %v; want %d", in, f.ns, err, want)
		}
	}
	if err := f.Set("yesterday"); err == nil || !strings.Contains(err.Error(), "RFC3339") {
		t.Errorf("Set(yesterday): %v", err)
	}
}

// TestReplayCLI records the simulator through the subcommand, checks
// `replay info`, and that bad captures are refused with clear errors.
func TestReplayCLI(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	cfg := feed.DefaultConfig()
	cfg.Addr, cfg.Rate, cfg.Symbols, cfg.MaxSeq, cfg.Logger = "127.0.0.1:0", 0, 20, 5000, testLogger()
	exch, err := feed.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	ectx, ecancel := context.WithCancel(ctx)
	go func() { done <- exch.Run(ectx) }()
	t.Cleanup(func() { ecancel(); <-done })
	<-exch.Ready()

	dir := t.TempDir()
	out := filepath.Join(dir, "c.trcap")
	err = runReplay(ctx, []string{"record", "-exchange", exch.Addr().String(), "-out", out, "-from-seq", "1", "-max", "5000", "-log-level", "error"})
	if err != nil {
		t.Fatal(err)
	}
	if err := runReplay(ctx, []string{"info", "-in", out, "-verify"}); err != nil {
		t.Fatal(err)
	}
	// Recording over an existing file is refused.
	err = runReplay(ctx, []string{"record", "-exchange", exch.Addr().String(), "-out", out, "-max", "1", "-log-level", "error"})
	if err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("record over a file: %v", err)
	}

	data, _ := os.ReadFile(out)
	torn := filepath.Join(dir, "torn.trcap")
	os.WriteFile(torn, data[:len(data)*2/3], 0o644)
	err = runReplay(ctx, []string{"serve", "-in", torn, "-addr", "127.0.0.1:0"})
	if err == nil || !strings.Contains(err.Error(), "byte offset") || !strings.Contains(err.Error(), "-allow-damaged") {
		t.Fatalf("torn capture: %v", err)
	}
	v3 := filepath.Join(dir, "v3.trcap")
	data[5] = 3
	os.WriteFile(v3, data, 0o644)
	err = runReplay(ctx, []string{"serve", "-in", v3, "-addr", "127.0.0.1:0"})
	if err == nil || !strings.Contains(err.Error(), "capture format version 3, this tickrelay reads 1") {
		t.Fatalf("v3 capture: %v", err)
	}
	err = runReplay(ctx, []string{"serve", "-in", filepath.Join(dir, "missing.trcap")})
	if err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("missing capture: %v", err)
	}

	// Serve the good capture at -max and let it exit after the end.
	sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
	defer scancel()
	err = runReplay(sctx, []string{"serve", "-in", out, "-addr", "127.0.0.1:0", "-max", "-start-on-logon=false",
		"-linger", "50ms", "-log-level", "error"})
	if err != nil || sctx.Err() != nil {
		t.Fatalf("serve: %v (ctx %v)", err, sctx.Err())
	}
}
