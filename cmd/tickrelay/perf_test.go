package main

import (
	"context"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"tickrelay/latency"
	"tickrelay/perf"
)

// TestPerfTickrelayStep runs the tickrelay side of `tickrelay perf` end to
// end at small scale: exchange, root (temp journal) and one child as
// processes of the built binary, 50 harness clients, 2k msgs/s for 2 s.
// Every published message reaches each of its subscribers and every hop's
// histogram holds each delivery.
func TestPerfTickrelayStep(t *testing.T) {
	bin := tickrelayBin(t)
	cfg := perf.DefaultConfig()
	cfg.Rates = []int{2000}
	cfg.Clients, cfg.SubsPerClient, cfg.Symbols, cfg.Children = 50, 4, 20, 1
	cfg.Duration, cfg.Repeats, cfg.SweepWarmUp = 2*time.Second, 1, 0 // one step: no warm-up
	cfg.Systems, cfg.Out = []string{perf.SystemTickrelay}, ""
	cfg.Spawn = func(ctx context.Context, args ...string) *exec.Cmd { return exec.CommandContext(ctx, bin, args...) }
	cfg.ServerLog = testWriter{t}
	for _, p := range []*int{&cfg.ExchangePort, &cfg.RootPort, &cfg.ChildPort} {
		_, port, _ := net.SplitHostPort(freeAddr(t))
		var err error
		if *p, err = strconv.Atoi(port); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 25*time.Second)
	defer cancel()
	res, err := perf.Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Steps) != 1 {
		t.Fatalf("%d steps", len(res.Steps))
	}
	st := res.Steps[0]
	if st.Err != "" {
		t.Fatalf("step: %s", st.Err)
	}
	t.Logf("published %d (%.0f/s) delivered %d of %d (%.0f/s), cpu %v (%.0f ns/delivery), rss/client %.0f B",
		st.Published, st.AchievedRate, st.Delivered, st.Expected, st.DeliveryRate, st.ServerCPU, st.CPUPerDeliveryNs, st.RSSPerClient)
	// 2000/s for 2 s: 4000 messages, each to 50*4/20 = 10 clients.
	if st.Published != 4000 || st.Expected != 40000 {
		t.Fatalf("published %d, expected %d", st.Published, st.Expected)
	}
	if st.Delivered != st.Expected || st.Harness.Conns != 50 || st.Harness.BadFrames != 0 ||
		st.Harness.Disconnects != 0 || st.Harness.FirstSeq != 1 || st.Harness.LastSeq != 4000 {
		t.Fatalf("delivered %d of %d; harness %+v", st.Delivered, st.Expected, st.Harness)
	}
	// The first second is warm-up: delivered and counted, not recorded.
	recorded := st.Delivered - st.WarmupFrames
	if st.WarmupFrames == 0 || recorded <= 0 {
		t.Fatalf("%d of %d frames in the %v warm-up", st.WarmupFrames, st.Delivered, st.Warmup)
	}
	for _, h := range []latency.Hop{latency.HopExchRoot, latency.HopRoot, latency.HopRootChild, latency.HopChild, latency.HopChildClient, latency.HopEndToEnd} {
		hs := st.Latency.Hops[h]
		if hs.Count+hs.Errors != recorded || hs.Count == 0 || hs.P50 <= 0 {
			t.Errorf("%s: %+v", h, hs)
		}
	}
	if st.HDR == nil || st.HDR.Count(latency.HopEndToEnd) != recorded || st.Latency.Hops[latency.HopEndToEnd].Errors != 0 {
		t.Fatalf("end-to-end histogram: %+v", st.Latency.Hops[latency.HopEndToEnd])
	}
	if st.CPUPerDeliveryNs <= 0 || st.ServerRSS <= 0 {
		t.Fatalf("cpu %v rss %d", st.CPUPerDeliveryNs, st.ServerRSS)
	}
	if st.FramesPerWrite < 1 {
		t.Fatalf("frames per client write %v, want >= 1 (scraped from the child)", st.FramesPerWrite)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	if testing.Verbose() {
		w.t.Logf("%s", p)
	}
	return len(p), nil
}
