package main

import (
	"context"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"tickrelay/child/cluster"
	"tickrelay/perf"
)

// BenchmarkFailover: 3 child processes, 1,000 sticky cluster clients (1
// symbol each, 500 msgs/s feed). Each iteration SIGKILLs the child with
// the most clients and measures, over its clients, the time from the kill
// to each one's first resumed frame (failover-p50-ms, -p99-ms, -max-ms;
// the symbol's next update comes ~30 ms later on average) and to the new
// child's OK RESUME (resumed-p50-ms, -p99-ms),
// and the CPU the surviving children spent in the 2 s after the kill
// above what they spent in the 2 s before (storm-cpu-ms); then the child
// comes back and the clients settle.
//
//	go test ./cmd/tickrelay -run '^$' -bench Failover -benchtime 3x
func BenchmarkFailover(b *testing.B) {
	const clients, window = 1000, 500 * time.Millisecond
	_, rt, kids := startClusterTier(b, 500, "a", "b", "c")
	seeds := []string{kids["a"].addr, kids["b"].addr, kids["c"].addr}
	waitDirectory(b, seeds[0], 3)
	ctx, cancel := context.WithCancel(b.Context())
	defer cancel()
	readers, wait := readersUp(b, ctx, clients, 30*time.Second, func(i int) (cluster.Config, []string) {
		return cluster.Config{Seeds: seeds, ID: "bench-" + strconv.Itoa(i), MoveWindow: window,
			BackoffMin: 20 * time.Millisecond, BackoffMax: 500 * time.Millisecond}, []string{strconv.Itoa(1 + i%30)}
	})
	defer func() { cancel(); wait() }()
	var lat, answered []time.Duration
	var storm time.Duration
	cpu := func(names []string) time.Duration {
		var sum time.Duration
		for _, n := range names {
			u, _ := perf.ReadProc(kids[n].p.cmd.Process.Pid)
			sum += u.CPU
		}
		return sum
	}
	b.ResetTimer()
	for range b.N {
		victim, most := "", -1
		var survivors []string
		for n, k := range kids {
			c := 0
			for _, r := range readers {
				if r.child() == k.addr {
					c++
				}
			}
			if c > most {
				victim, most = n, c
			}
		}
		for n := range kids {
			if n != victim {
				survivors = append(survivors, n)
			}
		}
		before := cpu(survivors)
		time.Sleep(2 * time.Second)
		idle := cpu(survivors) - before
		var on []*clusterReader
		for _, r := range readers {
			if r.child() == kids[victim].addr {
				on = append(on, r)
			}
		}
		killed := time.Now()
		kids[victim].p.signal(syscall.SIGKILL)
		<-kids[victim].p.done
		time.Sleep(2 * time.Second)
		storm += cpu(survivors) - before - 2*idle // the 2 s after, less the 2 s before
		for _, r := range on {
			at, ok := r.firstFrameAfter(killed)
			if !ok {
				b.Fatalf("a client of %s did not resume: on %s, moves %+v, err %v", victim, r.child(), r.movesSince(killed), r.failure())
			}
			lat = append(lat, at.Sub(killed))
			if ms := r.movesSince(killed); len(ms) > 0 {
				answered = append(answered, ms[0].At.Add(ms[0].Stall).Sub(killed))
			}
		}
		kids[victim] = startClusterChild(b, rt.Addr(), victim, kids[victim].addr)
		time.Sleep(window + time.Second) // its clients come back
	}
	b.StopTimer()
	slices.Sort(lat)
	slices.Sort(answered)
	q := func(d []time.Duration, p float64) float64 {
		return float64(d[min(len(d)-1, int(p*float64(len(d))))]) / 1e6
	}
	b.ReportMetric(q(lat, 0.5), "failover-p50-ms")
	b.ReportMetric(q(lat, 0.99), "failover-p99-ms")
	b.ReportMetric(q(answered, 0.5), "resumed-p50-ms")
	b.ReportMetric(q(answered, 0.99), "resumed-p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1])/1e6, "failover-max-ms")
	b.ReportMetric(float64(len(lat))/float64(b.N), "clients-moved/op")
	b.ReportMetric(float64(storm)/1e6/float64(b.N), "storm-cpu-ms/op")
	b.ReportMetric(0, "ns/op")
}
