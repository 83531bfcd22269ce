//go:build !linux

package prefault

func populate([]byte) bool { return false }
