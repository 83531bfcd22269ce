//go:build !linux

package uring

import "errors"

// Ring is not available off Linux: New always fails.
type Ring struct{}

// New fails: io_uring is Linux's.
func New(uint32, func(tag uint64, res int)) (*Ring, error) {
	return nil, errors.New("io_uring: not on this system")
}

func (*Ring) Send(int, []byte, uint64)       {}
func (*Ring) Submit()                        {}
func (*Ring) Stats() (submits, sends uint64) { return 0, 0 }
func (*Ring) Close() error                   { return nil }
