//go:build !linux

package perf

// runNiced runs fn: per-thread priorities are a Linux feature.
func runNiced(_ int, fn func() error) error { return fn() }
