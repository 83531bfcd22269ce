//go:build !linux

package harness

import "errors"

type poller struct{}

func newPoller(*Harness, int) (*poller, error) {
	return nil, errors.New("harness: Mode epoll needs Linux")
}

func (*poller) add(*conn, int) error { return errors.New("harness: Mode epoll needs Linux") }
func (*poller) stop()                {}
