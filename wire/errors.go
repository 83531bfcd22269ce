package wire

import (
	"errors"
	"fmt"
)

// ErrShort means the buffer holds only part of a unit: read more and retry.
// It is not a protocol error.
var ErrShort = errors.New("wire: need more bytes")

// Sentinel protocol errors. Decoders return an *Error wrapping one of these,
// so callers test with errors.Is and log the detail.
var (
	ErrEmpty       = errors.New("zero length")
	ErrTooLarge    = errors.New("length over limit")
	ErrTruncated   = errors.New("truncated")
	ErrUnknownType = errors.New("unknown message type")
	ErrStamps      = errors.New("inconsistent sequence or stamps")
	ErrSyntax      = errors.New("syntax error")
)

// Error is a decode failure: what was being decoded, the sentinel kind, and
// a detail for humans.
type Error struct {
	What   string // "feed frame", "relay batch", "client line", ...
	Kind   error  // one of the sentinels above
	Detail string
}

func (e *Error) Error() string {
	if e.Detail == "" {
		return "wire: " + e.What + ": " + e.Kind.Error()
	}
	return "wire: " + e.What + ": " + e.Kind.Error() + ": " + e.Detail
}

func (e *Error) Unwrap() error { return e.Kind }

func errorf(what string, kind error, format string, args ...any) error {
	return &Error{What: what, Kind: kind, Detail: fmt.Sprintf(format, args...)}
}
