// Package entitle maps client tokens to the symbols they may see. A
// child with an entitlements file asks each client for "AUTH token" first
// and then serves it only the symbols its grant covers.
//
// The file has one line per token, "identity token pattern...":
//
//	# identity  token                 patterns
//	alice       k7Qm2-alice-2026      00001-00100 00700
//	desk-b      f00dfeed-b            *
//
// A pattern is a symbol code (00700, or 700), a range of codes
// (00001-00100, both ends in) or "*" (every symbol). Blank lines and
// lines starting with '#' are skipped. An identity is 1..64 of
// [A-Za-z0-9._-]; a token is 8..256 printable characters without spaces,
// and no two lines may hold the same one. Tokens are kept only as their
// SHA-256, looked up by that hash (so a lookup's timing says nothing of
// how much of a token matched) and never logged.
package entitle

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"slices"

	"tickrelay/wire"
)

// MinTokenLen is the shortest token a file may hold.
const MinTokenLen = 8

// Key is a token's SHA-256.
type Key [sha256.Size]byte

// KeyOf hashes a token.
func KeyOf(token []byte) Key { return sha256.Sum256(token) }

// Grant is the set of symbol codes a token covers. A nil *Grant (no
// entitlements in force) covers everything.
type Grant struct {
	all    bool
	ranges []span // sorted, disjoint, not adjacent
}

type span struct{ lo, hi uint32 }

// All is the grant of every symbol; None of none.
var (
	All  = &Grant{all: true}
	None = &Grant{}
)

// Everything reports whether g covers every symbol.
func (g *Grant) Everything() bool { return g == nil || g.all }

// Allows reports whether g covers symbol code.
func (g *Grant) Allows(code uint32) bool {
	if g == nil || g.all {
		return true
	}
	i, _ := slices.BinarySearchFunc(g.ranges, code, func(s span, c uint32) int {
		switch {
		case s.hi < c:
			return -1
		case s.lo > c:
			return 1
		}
		return 0
	})
	return i < len(g.ranges) && g.ranges[i].lo <= code && code <= g.ranges[i].hi
}

// AllowsSymbol reports whether g covers a symbol as a client names it: a
// symbol that is not a code is never covered but by "*".
func (g *Grant) AllowsSymbol(sym []byte) bool {
	if g == nil || g.all {
		return true
	}
	code, ok := wire.ParseSymbol(sym)
	return ok && g.Allows(code)
}

// AllowsFrame reports whether g covers the symbol of a text frame
// ("<TYPE> <seq> <sym> ..."); a frame it cannot read is not covered.
func (g *Grant) AllowsFrame(frame []byte) bool {
	if g == nil || g.all {
		return true
	}
	code, ok := wire.TextFrameCode(frame)
	return ok && g.Allows(code)
}

// FilterFrames appends to dst the frames (whole lines) of src g covers.
func (g *Grant) FilterFrames(dst, src []byte) []byte {
	for len(src) > 0 {
		line := src
		if i := bytes.IndexByte(src, '\n'); i >= 0 {
			line, src = src[:i+1], src[i+1:]
		} else {
			src = nil
		}
		if g.AllowsFrame(line) {
			dst = append(dst, line...)
		}
	}
	return dst
}

// Entry is one token's line.
type Entry struct {
	Identity string
	Grant    *Grant
	Line     int // where it is in the file
}

// Table is a parsed entitlements file.
type Table struct {
	entries map[Key]*Entry
}

// Lookup returns the entry of token, if the table has it.
func (t *Table) Lookup(token []byte) (*Entry, bool) { return t.LookupKey(KeyOf(token)) }

// LookupKey is Lookup by a token's key.
func (t *Table) LookupKey(k Key) (*Entry, bool) {
	e, ok := t.entries[k]
	return e, ok
}

// Len is the number of tokens.
func (t *Table) Len() int { return len(t.entries) }

// MaxLine bounds one line of the file.
const MaxLine = 64 << 10

// Parse reads an entitlements file; name labels its errors ("file:line:
// what"), which never quote a token.
func Parse(r io.Reader, name string) (*Table, error) {
	t := &Table{entries: map[Key]*Entry{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), MaxLine)
	n := 0
	for sc.Scan() {
		n++
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		f := bytes.Fields(line)
		bad := func(format string, args ...any) error {
			return fmt.Errorf("%s:%d: %s", name, n, fmt.Sprintf(format, args...))
		}
		if len(f) < 3 {
			return nil, bad("want \"identity token pattern...\", got %d fields", len(f))
		}
		if !validIdentity(f[0]) {
			return nil, bad("bad identity %.40q: 1..64 of A-Z a-z 0-9 . _ -", f[0])
		}
		if len(f[1]) < MinTokenLen || !wire.ValidToken(f[1]) {
			return nil, bad("bad token: %d..%d printable characters without spaces", MinTokenLen, wire.MaxTokenLen)
		}
		k := KeyOf(f[1])
		if prev, dup := t.entries[k]; dup {
			return nil, bad("the same token as line %d", prev.Line)
		}
		g, err := parseGrant(f[2:])
		if err != nil {
			return nil, bad("%v", err)
		}
		t.entries[k] = &Entry{Identity: string(f[0]), Grant: g, Line: n}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s:%d: %w", name, n+1, err)
	}
	return t, nil
}

func validIdentity(s []byte) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// parseGrant parses a line's patterns.
func parseGrant(pats [][]byte) (*Grant, error) {
	var spans []span
	for _, p := range pats {
		if string(p) == "*" {
			return All, nil
		}
		lo, hi, isRange := bytes.Cut(p, []byte("-"))
		a, ok1 := wire.ParseSymbol(lo)
		b, ok2 := a, ok1
		if isRange {
			b, ok2 = wire.ParseSymbol(hi)
		}
		if !ok1 || !ok2 || b < a {
			return nil, fmt.Errorf("bad pattern %.40q: a symbol code, a range lo-hi (lo <= hi) or *", p)
		}
		spans = append(spans, span{a, b})
	}
	slices.SortFunc(spans, func(x, y span) int { return int(int64(x.lo) - int64(y.lo)) })
	merged := spans[:0]
	for _, s := range spans {
		if n := len(merged); n > 0 && uint64(s.lo) <= uint64(merged[n-1].hi)+1 {
			merged[n-1].hi = max(merged[n-1].hi, s.hi)
			continue
		}
		merged = append(merged, s)
	}
	return &Grant{ranges: merged}, nil
}
