package perf

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// runNiced runs fn on an OS thread of its own at nice n (the publisher, so
// it has the exchange simulator's priority, not the harness's). The thread
// is discarded afterwards (never unlocked) so no harness goroutine inherits
// the priority. A failed setpriority leaves the thread's nice as it was.
func runNiced(n int, fn func() error) error {
	if n == 0 {
		return fn()
	}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // not unlocked: the thread exits with the goroutine
		unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), n)
		done <- fn()
	}()
	return <-done
}
