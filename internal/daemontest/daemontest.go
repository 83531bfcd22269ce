// Package daemontest runs a tickrelay daemon (exchange, replay, root,
// child) inside a test: started, waited for, and stopped cleanly at the end.
package daemontest

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"
)

// Daemon is what every tickrelay daemon looks like to a test.
type Daemon interface {
	Run(ctx context.Context) error
	Ready() <-chan struct{}
}

// Start runs d until the test ends and returns once it is ready (Addr is
// valid). stop cancels it early and waits for Run to return; a Run error or
// a Run that does not return within 15 s fails the test.
func Start(t testing.TB, name string, d Daemon) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("%s stopped with: %v", name, err)
				}
			case <-time.After(15 * time.Second):
				t.Errorf("%s did not stop within 15s", name)
			}
		})
	}
	t.Cleanup(stop)
	select {
	case <-d.Ready():
	case err := <-done:
		t.Fatalf("%s: %v", name, err)
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: not ready after 10s", name)
	}
	return stop
}

// Buffer is a goroutine-safe bytes.Buffer: a log or output sink a daemon's
// goroutines write while the test reads it.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
