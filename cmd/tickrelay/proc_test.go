package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"tickrelay/child"
	"tickrelay/child/client"
	"tickrelay/feed"
	"tickrelay/internal/daemontest"
	"tickrelay/wire"
)

// Helpers for tests that run `tickrelay` as a real process (kill -9 needs
// one): the binary is built once per test run, on first use.

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

func TestMain(m *testing.M) {
	if addr := os.Getenv(stormEnv); addr != "" { // BenchmarkConnectionStorm's client process
		stormClient(addr)
		return
	}
	if os.Getenv(sinkEnv) != "" { // and its control: a listener that refuses everyone
		stormSink()
		return
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// tickrelayBin builds ./cmd/tickrelay once and returns the binary's path.
func tickrelayBin(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "tickrelay-bin-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "tickrelay")
		cmd := exec.Command("go", "build", "-o", binPath, ".")
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// proc is one running `tickrelay` process.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *daemontest.Buffer
	done chan struct{}
	err  error // Wait's result, valid after done
}

// startProc runs `tickrelay args...` with $TICKRELAY_PG removed from the
// environment (tests pass -postgres explicitly). On test failure the tail of
// its log is printed; on cleanup it is killed if still running.
func startProc(t testing.TB, name string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(tickrelayBin(t), args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, envPG+"=") && !strings.HasPrefix(kv, "STATE_DIRECTORY=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	p := &proc{name: name, cmd: cmd, out: &daemontest.Buffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.signal(syscall.SIGKILL)
		<-p.done
		if t.Failed() {
			t.Logf("---- %s log (tail) ----\n%s", p.name, tail(p.out.String(), 60))
		}
	})
	return p
}

func tail(s string, lines int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(ls[max(0, len(ls)-lines):], "\n")
}

func (p *proc) signal(sig syscall.Signal) {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Signal(sig)
	}
}

// exited waits up to d for the process to end and returns its exit code.
func (p *proc) exited(t testing.TB, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		t.Fatalf("%s still running after %v", p.name, d)
	}
	return p.cmd.ProcessState.ExitCode()
}

// kill9 kills the process with SIGKILL and waits for it.
func (p *proc) kill9(t testing.TB) {
	t.Helper()
	p.signal(syscall.SIGKILL)
	p.exited(t, 10*time.Second)
}

// stop sends SIGTERM and requires a clean exit (status 0) within d.
func (p *proc) stop(t testing.TB, d time.Duration) {
	t.Helper()
	p.signal(syscall.SIGTERM)
	if code := p.exited(t, d); code != 0 {
		t.Fatalf("%s exited with status %d after SIGTERM", p.name, code)
	}
}

// waitLog waits until the process logged a line containing every one of subs.
func (p *proc) waitLog(t testing.TB, d time.Duration, subs ...string) string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		for _, line := range strings.Split(p.out.String(), "\n") {
			ok := true
			for _, s := range subs {
				ok = ok && strings.Contains(line, s)
			}
			if ok {
				return line
			}
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited (%v) before logging %q", p.name, p.err, subs)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not log %q within %v", p.name, subs, d)
		}
	}
}

// freeAddr returns a loopback address with a port that was free a moment
// ago (a restarted root must come back on the same one).
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// rootArgs are the flags of a test root process.
func rootArgs(exchange net.Addr, addr, admin, journalPath string, extra ...string) []string {
	return append([]string{"root", "-exchange", exchange.String(), "-addr", addr, "-admin", admin,
		"-journal", journalPath, "-loops", "2", "-log-level", "info"}, extra...)
}

// startChildAt is startChild with a history deep enough for a RESUME of the
// whole test stream.
func startChildAt(t *testing.T, rootAddr, name string, fromSeq uint64) *child.Child {
	t.Helper()
	cfg := child.DefaultConfig()
	cfg.Roots, cfg.Addr, cfg.Name, cfg.FromSeq = []string{rootAddr}, "127.0.0.1:0", name, fromSeq
	cfg.Loops = 1
	cfg.HistorySize, cfg.HistoryBytes = 1<<18, 256<<20
	cfg.BackoffMin, cfg.BackoffMax = 10*time.Millisecond, 200*time.Millisecond
	cfg.Logger = testLogger()
	c, err := child.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	daemontest.Start(t, "child "+name, c)
	return c
}

// verifyResume connects a client to ch, RESUMEs "*" from seq from and
// checks it gets every seq from..to exactly once, in order, each equal to
// what the exchange sent.
func verifyResume(t *testing.T, ch *child.Child, ex *feed.Server, from, to uint64) {
	t.Helper()
	c, err := client.Dial(t.Context(), ch.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Resume(from, wire.AllSymbols); err != nil {
		t.Fatal(err)
	}
	c.Conn().SetReadDeadline(time.Now().Add(30 * time.Second))
	next := from
	var want wire.Msg
	for next <= to {
		ev, err := c.Next()
		if err != nil {
			t.Fatalf("client: at seq %d: %v", next, err)
		}
		switch ev.Kind {
		case wire.LineOK:
			continue
		case wire.LineFrame:
		default:
			t.Fatalf("client: unexpected line %q at seq %d", ev.Line, next)
		}
		if ev.Seq != next {
			t.Fatalf("client: got seq %d, want %d (gap or duplicate)", ev.Seq, next)
		}
		body, ok := ex.Body(ev.Seq)
		if !ok {
			t.Fatalf("seq %d not in the exchange history", ev.Seq)
		}
		if _, err := wire.DecodeMsg(body, &want); err != nil {
			t.Fatal(err)
		}
		if want != ev.Msg {
			t.Fatalf("seq %d: got %+v, exchange sent %+v", ev.Seq, ev.Msg, want)
		}
		next++
	}
}

// checkTable requires table to hold every seq 1..n exactly once, each body
// equal to what the exchange sent.
func checkTable(t *testing.T, dsn, table string, ex *feed.Server, n uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var count, distinct, lo, hi int64
	err = conn.QueryRow(ctx, "SELECT count(*), count(DISTINCT seq), coalesce(min(seq),0), coalesce(max(seq),0) FROM "+table).
		Scan(&count, &distinct, &lo, &hi)
	if err != nil {
		t.Fatal(err)
	}
	if count != int64(n) || distinct != int64(n) || lo != 1 || hi != int64(n) {
		t.Fatalf("%s: count %d, distinct %d, seqs %d..%d; want %d rows 1..%d", table, count, distinct, lo, hi, n, n)
	}
	rows, err := conn.Query(ctx, "SELECT seq, body FROM "+table+" ORDER BY seq")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var seq int64
	var body []byte
	bad := 0
	for rows.Next() {
		if err := rows.Scan(&seq, &body); err != nil {
			t.Fatal(err)
		}
		if want, _ := ex.Body(uint64(seq)); !bytes.Equal(body, want) {
			if bad++; bad == 1 {
				t.Errorf("%s: seq %d: body differs from the exchange's", table, seq)
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if bad > 0 {
		t.Fatalf("%s: %d bodies differ", table, bad)
	}
}
