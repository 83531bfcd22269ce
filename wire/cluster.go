package wire

import (
	"bytes"
	"strconv"
	"time"
)

// Lines that move clients between children:
//
//	INFO DRAIN <grace ms>           the child is going away: move within the grace
//	ERR BUSY retry=<ms> [try=<addr>] not now: come back later, or go to addr
const (
	InfoDrain   = "DRAIN"
	ErrCodeBusy = "BUSY"
)

// AppendDrainLine appends "INFO DRAIN <grace ms>".
func AppendDrainLine(dst []byte, grace time.Duration) []byte {
	dst = append(dst, "INFO "+InfoDrain+" "...)
	dst = strconv.AppendInt(dst, max(grace.Milliseconds(), 0), 10)
	return append(dst, '\n')
}

// ParseDrainLine parses an INFO DRAIN line into its grace.
func ParseDrainLine(line []byte) (time.Duration, error) {
	f := bytes.Fields(line)
	if len(f) != 3 || string(f[0]) != "INFO" || string(f[1]) != InfoDrain {
		return 0, errorf("info line", ErrSyntax, "%.40q", line)
	}
	ms, ok := parseUint(f[2])
	if !ok || ms > 1<<40 {
		return 0, errorf("info line", ErrSyntax, "%.40q", line)
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// AppendBusy appends "ERR BUSY retry=<ms> [try=<addr>]".
func AppendBusy(dst []byte, retry time.Duration, try string) []byte {
	dst = append(dst, "ERR "+ErrCodeBusy+" retry="...)
	dst = strconv.AppendInt(dst, max(retry.Milliseconds(), 0), 10)
	if try != "" {
		dst = append(append(dst, " try="...), try...)
	}
	return append(dst, '\n')
}

// ParseBusy parses an ERR BUSY line: when to retry and, if the child
// named one, where to go instead. Words it does not know are skipped.
func ParseBusy(line []byte) (retry time.Duration, try string, err error) {
	f := bytes.Fields(line)
	if len(f) < 3 || string(f[0]) != "ERR" || string(f[1]) != ErrCodeBusy {
		return 0, "", errorf("busy line", ErrSyntax, "%.40q", line)
	}
	seen := false
	for _, w := range f[2:] {
		switch {
		case bytes.HasPrefix(w, []byte("retry=")):
			ms, ok := parseUint(w[len("retry="):])
			if !ok || ms > 1<<40 {
				return 0, "", errorf("busy line", ErrSyntax, "%.40q", line)
			}
			retry, seen = time.Duration(ms)*time.Millisecond, true
		case bytes.HasPrefix(w, []byte("try=")):
			try = string(w[len("try="):])
		}
	}
	if !seen {
		return 0, "", errorf("busy line", ErrSyntax, "no retry= in %.40q", line)
	}
	return retry, try, nil
}
