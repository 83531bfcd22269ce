package perf

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ReadyPrefix starts the line a peer process prints on stdout once it
// listens: "ready 127.0.0.1:4222" (natspeer.ReadyPrefix).
const ReadyPrefix = "ready "

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

// Spawner builds the command for one invocation of a program: of tickrelay
// ("exchange", "-addr", ...) or of the NATS peer ("-addr", "127.0.0.1:0").
type Spawner func(ctx context.Context, args ...string) *exec.Cmd

// SelfSpawner runs the current executable (the tickrelay binary).
func SelfSpawner() (Spawner, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return spawnerOf(exe), nil
}

// spawnerOf runs the program at path.
func spawnerOf(path string) Spawner {
	return func(ctx context.Context, args ...string) *exec.Cmd {
		return exec.CommandContext(ctx, path, args...)
	}
}

// NATSPeerName is the NATS peer's binary (cmd/tickrelay-natspeer).
const NATSPeerName = "tickrelay-natspeer"

// NATSPeerSpawner runs the NATS peer binary found next to the current
// executable (where `make build` puts both), else on PATH.
func NATSPeerSpawner() (Spawner, error) {
	path, err := exec.LookPath(NATSPeerName)
	if exe, eerr := os.Executable(); eerr == nil {
		if p := filepath.Join(filepath.Dir(exe), NATSPeerName); isExecutable(p) {
			path, err = p, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%s not next to this binary nor on PATH (make build builds it)", NATSPeerName)
	}
	return spawnerOf(path), nil
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
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
