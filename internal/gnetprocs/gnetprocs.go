// Package gnetprocs sizes GOMAXPROCS for a process that runs gnet event
// loops next to goroutines on Go's own netpoller.
//
// A gnet loop waits in epoll_wait as a plain blocking syscall and keeps its
// P (processor slot) while it waits. With GOMAXPROCS = NumCPU and as many
// loops as CPUs, every P can be parked in such a wait; a goroutine that Go's
// netpoller wakes (the root's exchange session, the child's relay reader)
// then waits until the runtime's monitor polls the network or takes a P
// back, up to ~10 ms. Measured with `tickrelay perf` at 10k msgs/s: the
// root's exch->root p99 fell from ~11 ms to ~2 ms with two spare Ps.
package gnetprocs

import (
	"os"
	"runtime"
)

// Reserve raises GOMAXPROCS to NumCPU + loops, so the loops' waits never
// hold the Ps the rest of the process needs. An explicit GOMAXPROCS in the
// environment wins. It returns the value in effect.
func Reserve(loops int) int {
	if os.Getenv("GOMAXPROCS") != "" || loops < 1 {
		return runtime.GOMAXPROCS(0)
	}
	want := runtime.NumCPU() + loops
	if want > runtime.GOMAXPROCS(0) {
		runtime.GOMAXPROCS(want)
	}
	return runtime.GOMAXPROCS(0)
}
