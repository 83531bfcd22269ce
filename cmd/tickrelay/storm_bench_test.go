package main

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"tickrelay/child/client"
	"tickrelay/perf"
	"tickrelay/wire"
)

// BenchmarkConnectionStorm: a child process (-accept-rate 2000
// -accept-burst 100) serves 1,000 reading clients (1 symbol each of 1,000,
// 20k msgs/s feed). Each iteration measures the readers' end-to-end p99
// for 3 s, then while a bounded client
// (a process of its own, 64 at a time, on blocking system calls) makes
// 10,000 connects, each sending PING and reading one line. Every
// refused connection must get ERR BUSY (refused-no-line counts those that
// did not). Reported: the p99s, their ratio, the connects refused.
//
//	go test ./cmd/tickrelay -run '^$' -bench ConnectionStorm -benchtime 1x
func BenchmarkConnectionStorm(b *testing.B) {
	const readers = 1000
	ex := startExchange(b, 20000, 1000, 0)
	rt, _ := startRoot(b, newRootConfig(ex.Addr()))
	k := startClusterChild(b, rt.Addr(), "storm", freeAddr(b), "-accept-rate", "2000", "-accept-burst", "100", "-loops", "1")
	type sample struct{ at, lat int64 }
	var mu sync.Mutex
	var samples []sample
	ctx, cancel := context.WithCancel(b.Context())
	defer cancel()
	var wg sync.WaitGroup
	for i := range readers {
		var c *client.Client
		waitFor(b, "a reader admitted", 10*time.Second, func() bool {
			var err error
			if c, err = client.Dial(ctx, k.addr); err != nil {
				return false
			}
			c.Ping() // admitted once it answers PONG, not ERR BUSY
			if ev, err := c.Next(); err != nil || ev.Kind != wire.LinePong {
				c.Close()
				return false
			}
			if err := c.Sub(strconv.Itoa(1 + i%1000)); err != nil {
				c.Close()
				return false
			}
			return true
		})
		wg.Go(func() {
			go func() { <-ctx.Done(); c.Close() }()
			var mine []sample
			on := false
			for {
				ev, err := c.Next()
				if err != nil {
					break
				}
				switch ev.Kind {
				case wire.LineOK:
					on = true
				case wire.LineFrame:
					if on {
						mine = append(mine, sample{ev.Recv, ev.Recv - ev.Stamps.ExchSend})
					}
				case wire.LineErr:
					b.Errorf("reader: %s", ev.Line)
				}
			}
			mu.Lock()
			samples = append(samples, mine...)
			mu.Unlock()
		})
	}
	time.Sleep(time.Second) // the readers' images are in
	var refused, admitted, lineless atomic.Int64
	type window struct{ from, to int64 }
	var calm, stormy, sunk []window
	sink := exec.Command(os.Args[0], "-test.run=^$")
	sink.Env = append(os.Environ(), sinkEnv+"=1")
	sinkIn, _ := sink.StdinPipe()
	sinkOut, _ := sink.StdoutPipe()
	if err := sink.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { sinkIn.Close(); sink.Wait() }()
	var sinkPort int
	if _, err := fmt.Fscan(sinkOut, &sinkPort); err != nil {
		b.Fatalf("storm sink: %v", err)
	}
	runStorm := func(addr string) (refused, admitted, lineless int64, cpu time.Duration) {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), stormEnv+"="+addr)
		out, err := cmd.Output()
		if err != nil {
			b.Fatalf("storm client: %v", err)
		}
		if _, err := fmt.Sscan(string(out), &refused, &admitted, &lineless); err != nil {
			b.Fatalf("storm client said %q: %v", out, err)
		}
		return refused, admitted, lineless, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	childCPU := func() time.Duration {
		u, _ := perf.ReadProc(k.p.cmd.Process.Pid)
		return u.CPU
	}
	var calmCPU, stormCPU, clientCPU time.Duration
	b.ResetTimer()
	for range b.N {
		s0 := time.Now()
		if r, _, _, _ := runStorm("127.0.0.1:" + strconv.Itoa(sinkPort)); r != 10000 {
			b.Fatalf("the sink refused %d of 10000", r)
		}
		sunk = append(sunk, window{s0.UnixNano(), time.Now().UnixNano()})
		time.Sleep(time.Second) // calm again
		t0, c0 := time.Now(), childCPU()
		time.Sleep(3 * time.Second)
		t1, c1 := time.Now(), childCPU()
		calmCPU += (c1 - c0) / 3
		calm = append(calm, window{t0.UnixNano(), t1.UnixNano()})
		if out := os.Getenv("STORM_PROFILE"); out != "" { // the child's CPU profile of the storm
			go func() {
				if prof, err := exec.Command("curl", "-s", "-o", out, "http://"+k.admin+"/debug/pprof/profile?seconds=1").CombinedOutput(); err != nil {
					b.Logf("profile: %v %s", err, prof)
				}
			}()
		}
		r, a, l, cpu := runStorm(k.addr)
		stormCPU += childCPU() - c1
		clientCPU += cpu
		refused.Add(r)
		admitted.Add(a)
		lineless.Add(l)
		stormy = append(stormy, window{t1.UnixNano(), time.Now().UnixNano()})
	}
	b.StopTimer()
	cancel()
	wg.Wait()
	p99 := func(ws []window) float64 {
		var lat []int64
		for _, s := range samples {
			for _, w := range ws {
				if s.at >= w.from && s.at < w.to {
					lat = append(lat, s.lat)
				}
			}
		}
		if len(lat) == 0 {
			b.Fatal("no frames in a window")
		}
		slices.Sort(lat)
		return float64(lat[len(lat)*99/100]) / 1e6
	}
	base, during, control := p99(calm), p99(stormy), p99(sunk)
	b.ReportMetric(base, "calm-p99-ms")
	b.ReportMetric(during, "storm-p99-ms")
	b.ReportMetric(control, "sink-storm-p99-ms")
	b.ReportMetric(during/base, "storm/calm")
	b.ReportMetric(during/control, "storm/sink-storm")
	b.ReportMetric(float64(refused.Load())/float64(b.N), "refused/op")
	b.ReportMetric(float64(admitted.Load())/float64(b.N), "admitted/op")
	b.ReportMetric(float64(lineless.Load())/float64(b.N), "refused-no-line/op")
	b.ReportMetric(float64(stormy[0].to-stormy[0].from)/1e9, "storm-s")
	b.ReportMetric(float64(calmCPU)/1e6/float64(b.N), "child-cpu-ms/s-calm")
	b.ReportMetric(float64(stormCPU)/1e6/float64(b.N), "child-cpu-ms-storm")
	b.ReportMetric(float64(clientCPU)/1e6/float64(b.N), "client-cpu-ms-storm")
	b.ReportMetric(0, "ns/op")
	if lineless.Load() > 0 {
		b.Errorf("%d connections ended without a line", lineless.Load())
	}
}

// stormEnv names the child address the storm client process dials.
const stormEnv = "TICKRELAY_STORM_ADDR"

// stormClient is BenchmarkConnectionStorm's bounded client, run as a
// process of its own so that its dials do not share the readers' Go
// scheduler, and on blocking system calls (no netpoller, no goroutine per
// connect) so that the storm costs the box little more than the kernel's
// share: 10,000 connects paced over 1 s, 64 at a time, each sending PING and reading the
// first line. It prints the counts refused (ERR BUSY), admitted (PONG)
// and ended without a line.
func stormClient(addr string) {
	const storm, parallel = 10000, 64
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		fmt.Println(0, 0, storm)
		return
	}
	sa := &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	var next, refused, admitted, lineless atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range parallel {
		wg.Go(func() {
			buf := make([]byte, 256)
			for i := next.Add(1); i <= storm; i = next.Add(1) {
				time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / storm))) // 10,000 in 1 s, evenly
				switch stormOnce(sa, buf) {
				case wire.LinePong:
					admitted.Add(1)
				case wire.LineErr:
					refused.Add(1)
				default:
					lineless.Add(1)
				}
			}
		})
	}
	wg.Wait()
	fmt.Println(refused.Load(), admitted.Load(), lineless.Load())
}

// stormOnce connects, sends PING and reads one line: PONG, an ERR BUSY
// (LineErr), or anything else (LineUnknown).
func stormOnce(sa syscall.Sockaddr, buf []byte) wire.LineKind {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return wire.LineUnknown
	}
	defer syscall.Close(fd)
	tv := syscall.Timeval{Sec: 2}
	syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
	if syscall.Connect(fd, sa) != nil {
		return wire.LineUnknown
	}
	if _, err := syscall.Write(fd, []byte("PING\n")); err != nil {
		return wire.LineUnknown
	}
	n := 0
	for n < len(buf) {
		m, err := syscall.Read(fd, buf[n:])
		if err != nil || m <= 0 {
			return wire.LineUnknown
		}
		n += m
		if i := bytes.IndexByte(buf[:n], '\n'); i >= 0 {
			line := buf[:i]
			switch {
			case string(line) == "PONG":
				return wire.LinePong
			case bytes.HasPrefix(line, []byte("ERR BUSY retry=")):
				return wire.LineErr
			}
			return wire.LineUnknown
		}
	}
	return wire.LineUnknown
}

// sinkEnv runs the test binary as stormSink.
const sinkEnv = "TICKRELAY_STORM_SINK"

// stormSink is the storm's control: a process that answers every
// connection "ERR BUSY retry=1000" and closes it, on blocking system
// calls, doing nothing else: the storm against it costs the box what a
// storm costs any server, without the child. It prints its port and
// serves until its stdin closes.
func stormSink() {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		os.Exit(1)
	}
	syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	if syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}) != nil || syscall.Listen(fd, 4096) != nil {
		os.Exit(1)
	}
	sa, _ := syscall.Getsockname(fd)
	fmt.Println(sa.(*syscall.SockaddrInet4).Port)
	go func() { os.Stdin.Read(make([]byte, 1)); os.Exit(0) }()
	line := []byte("ERR BUSY retry=1000\n")
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				nfd, _, err := syscall.Accept4(fd, syscall.SOCK_CLOEXEC)
				if err != nil {
					continue
				}
				syscall.Write(nfd, line)
				syscall.Close(nfd)
			}
		})
	}
	wg.Wait()
}
