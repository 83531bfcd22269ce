package perf

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
)

// RunNATS runs an embedded NATS server on addr (host must be loopback or
// empty, meaning 127.0.0.1) until ctx ends. ready gets the bound address.
// Limits stay at NATS defaults (64 MiB pending per client) so the peer runs
// the way its users run it.
func RunNATS(ctx context.Context, addr string, ready func(net.Addr)) error {
	host, port, err := splitLoopback(addr)
	if err != nil {
		return err
	}
	opts := &natsserver.Options{
		Host:   host,
		Port:   port,
		NoLog:  true,
		NoSigs: true,
	}
	if port == 0 {
		opts.Port = natsserver.RANDOM_PORT
	}
	s, err := natsserver.NewServer(opts)
	if err != nil {
		return fmt.Errorf("perf: nats: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return errors.New("perf: nats: not ready within 10s")
	}
	if ready != nil {
		ready(s.Addr())
	}
	<-ctx.Done()
	s.Shutdown()
	s.WaitForShutdown()
	return nil
}

// splitLoopback parses addr and insists on a loopback host: peers and
// daemons in a perf run bind 127.0.0.1 only.
func splitLoopback(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("perf: addr %q: %w", addr, err)
	}
	if host == "" || host == "localhost" {
		host = "127.0.0.1"
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return "", 0, fmt.Errorf("perf: addr %q: perf servers bind loopback only", addr)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("perf: addr %q: bad port", addr)
	}
	return host, port, nil
}

// ReadyPrefix starts the line a peer process prints on stdout once it
// listens: "ready 127.0.0.1:4222".
const ReadyPrefix = "ready "

// PeerMain runs one `tickrelay perf <mode>` helper process:
//
//	peer-nats -addr 127.0.0.1:0   embedded NATS server until SIGTERM
//
// It prints ReadyPrefix+addr on stdout when listening.
func PeerMain(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("perf: peer mode missing")
	}
	switch args[0] {
	case "peer-nats":
		fs := flag.NewFlagSet("tickrelay perf peer-nats", flag.ContinueOnError)
		addr := fs.String("addr", "127.0.0.1:4222", "listen address (loopback only)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return RunNATS(ctx, *addr, func(a net.Addr) { fmt.Fprintf(stdout, "%s%s\n", ReadyPrefix, a) })
	}
	return fmt.Errorf("perf: unknown mode %q", args[0])
}

// IsPeerMode reports whether args name a PeerMain helper mode.
func IsPeerMode(args []string) bool {
	return len(args) > 0 && strings.HasPrefix(args[0], "peer-")
}

// proc is one server process of a run.
type proc struct {
	name string
	cmd  *exec.Cmd
	addr string // announced or configured listen address
	wait chan error
	once sync.Once
}

// startProc starts cmd; when announce is set it waits for the ReadyPrefix
// line on stdout and records the address; else it dials addr until it
// accepts.
func startProc(ctx context.Context, name string, cmd *exec.Cmd, announce bool, addr string, logw io.Writer) (*proc, error) {
	p := &proc{name: name, cmd: cmd, addr: addr, wait: make(chan error, 1)}
	cmd.Stderr = logw
	// Our own pipe rather than StdoutPipe: its reader must not race Wait.
	var out *os.File
	if announce {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		out, cmd.Stdout = r, w
		defer w.Close() // the child holds its own copy
	} else {
		cmd.Stdout = logw
	}
	if err := cmd.Start(); err != nil {
		if out != nil {
			out.Close()
		}
		return nil, fmt.Errorf("perf: start %s: %w", name, err)
	}
	go func() { p.wait <- cmd.Wait() }()
	readyc := make(chan string, 1)
	if announce {
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if a, ok := strings.CutPrefix(sc.Text(), ReadyPrefix); ok {
					readyc <- a
					break
				}
			}
			io.Copy(io.Discard, out) // until the process exits
			out.Close()
		}()
	} else {
		go func() {
			for ctx.Err() == nil {
				if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
					c.Close()
					readyc <- addr
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		}()
	}
	t := time.NewTimer(15 * time.Second)
	defer t.Stop()
	select {
	case a := <-readyc:
		p.addr = a
		return p, nil
	case err := <-p.wait:
		p.wait <- err
		return nil, fmt.Errorf("perf: %s exited before ready: %v", name, err)
	case <-t.C:
		p.stop()
		return nil, fmt.Errorf("perf: %s not ready within 15s", name)
	case <-ctx.Done():
		p.stop()
		return nil, ctx.Err()
	}
}

// stop sends SIGTERM, then SIGKILL after 5 s, and waits. Idempotent.
func (p *proc) stop() {
	p.once.Do(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.wait:
		case <-time.After(5 * time.Second):
			p.cmd.Process.Kill()
			<-p.wait
		}
	})
}

// pid is the process id.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// Spawner builds the command for one tickrelay subcommand invocation, e.g.
// ("perf", "peer-nats", "-addr", "127.0.0.1:0") or ("exchange", "-addr", ...).
type Spawner func(ctx context.Context, args ...string) *exec.Cmd

// SelfSpawner runs the current executable (the tickrelay binary).
func SelfSpawner() (Spawner, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, args ...string) *exec.Cmd {
		return exec.CommandContext(ctx, exe, args...)
	}, nil
}

// redisAvailable reports whether redis-server is on PATH.
func redisAvailable() (string, bool) {
	p, err := exec.LookPath("redis-server")
	return p, err == nil
}

// freePort returns a loopback port free right now (for servers that cannot
// announce their own, like redis-server).
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
