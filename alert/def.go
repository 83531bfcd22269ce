// Package alert is the price-alert engine: standing alerts on a symbol's
// trade price, nominal price or best bid and ask, matched on every update.
//
// An alert fires at the first update of its field, after it was set, whose
// value reaches it (>= or <=); a plain alert is then gone, a repeat one waits
// until the value moves back past it by its hysteresis and is armed again.
//
// Set is the state (who holds which alert, the last fires of each owner)
// every child keeps as a replica and the root as the engine: with matching
// on, each (symbol, field) keeps its thresholds in two sorted ladders, one
// for the alerts an update at or above a price reaches and one for those at
// or below, so an update costs a map lookup and a look at each ladder's
// first rung, and the alerts it fires are that ladder's prefix. The package
// is pure: no I/O, no clock, no goroutines.
package alert

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
)

// Field is the value an alert watches.
type Field uint8

const (
	Last    Field = iota // trade price
	Nominal              // nominal price
	Bid                  // best bid (book level 1)
	Ask                  // best offer (book level 1)
	nFields
)

var fieldNames = [nFields]string{"last", "nominal", "bid", "ask"}

func (f Field) String() string {
	if f < nFields {
		return fieldNames[f]
	}
	return "field(" + strconv.Itoa(int(f)) + ")"
}

// Op is how an alert compares.
type Op uint8

const (
	AtOrAbove Op = iota // >=
	AtOrBelow           // <=
)

func (o Op) String() string {
	if o == AtOrAbove {
		return ">="
	}
	return "<="
}

// Limits of a Def.
const (
	MaxID    = 32 // alert ids
	MaxOwner = 64 // owner identities
	// MaxValue is the highest value (2147483.647; values have 3 decimals).
	MaxValue = math.MaxInt32
)

// Def is one alert. Values are in thousandths (3 implied decimals, as the
// feed's prices).
type Def struct {
	Owner  string
	ID     string
	Sym    uint32
	Field  Field
	Op     Op
	Value  int32
	Repeat bool
	Hyst   int32 // with Repeat: how far back past Value re-arms it (> 0)
	// After is the position (wire.Pos) it stands from, once sequenced: it
	// fires at the first update after it (0 in a client's line).
	After uint64
}

// ErrBad is what a malformed alert is.
var ErrBad = errors.New("alert: bad")

func bad(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBad, fmt.Sprintf(format, args...))
}

// ValidName reports whether s is a legal id (max MaxID) or owner (max
// MaxOwner): 1..max of [A-Za-z0-9._:/-].
func ValidName(s string, max int) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == ':' || c == '/') {
			return false
		}
	}
	return true
}

// Check reports what is wrong with d, if anything.
func (d *Def) Check() error {
	switch {
	case !ValidName(d.Owner, MaxOwner):
		return bad("owner %.80q is not 1..%d of [A-Za-z0-9._:/-]", d.Owner, MaxOwner)
	case !ValidName(d.ID, MaxID):
		return bad("id %.40q is not 1..%d of [A-Za-z0-9._:/-]", d.ID, MaxID)
	case d.Field >= nFields:
		return bad("unknown field %d", d.Field)
	case d.Op > AtOrBelow:
		return bad("unknown op %d", d.Op)
	case d.Value <= 0:
		return bad("value %d is not above 0", d.Value)
	case d.Repeat && d.Hyst <= 0:
		return bad("a repeat alert needs a hysteresis above 0")
	case !d.Repeat && d.Hyst != 0:
		return bad("a hysteresis without repeat")
	}
	return nil
}

// Parse reads the words after "ALERT": id sym field op value [repeat hyst].
// sym is taken as the caller gives it (a parsed code). Owner is left empty.
func Parse(words [][]byte) (d Def, sym []byte, err error) {
	if len(words) != 5 && len(words) != 7 {
		return d, nil, bad("want ALERT id sym field op value [repeat hysteresis]")
	}
	d.ID = string(words[0])
	if !ValidName(d.ID, MaxID) {
		return d, nil, bad("id %.40q is not 1..%d of [A-Za-z0-9._:/-]", words[0], MaxID)
	}
	sym = words[1]
	f, ok := ParseField(words[2])
	if !ok {
		return d, nil, bad("unknown field %.20q (last, nominal, bid, ask)", words[2])
	}
	d.Field = f
	switch string(words[3]) {
	case ">=":
		d.Op = AtOrAbove
	case "<=":
		d.Op = AtOrBelow
	default:
		return d, nil, bad("unknown op %.20q (>=, <=)", words[3])
	}
	if d.Value, err = ParseValue(words[4]); err != nil {
		return d, nil, err
	}
	if d.Value == 0 {
		return d, nil, bad("value must be above 0")
	}
	if len(words) == 7 {
		if string(words[5]) != "repeat" {
			return d, nil, bad("unknown option %.20q (repeat hysteresis)", words[5])
		}
		d.Repeat = true
		if d.Hyst, err = ParseValue(words[6]); err != nil {
			return d, nil, err
		}
		if d.Hyst == 0 {
			return d, nil, bad("hysteresis must be above 0")
		}
	}
	return d, sym, nil
}

// ParseField reads a field name.
func ParseField(b []byte) (Field, bool) {
	for i, n := range fieldNames {
		if string(b) == n {
			return Field(i), true
		}
	}
	return 0, false
}

// ParseValue reads a non-negative decimal with at most 3 decimals into
// thousandths: "12", "12.5", "0.125".
func ParseValue(b []byte) (int32, error) {
	whole, frac := b, []byte(nil)
	if i := bytes.IndexByte(b, '.'); i >= 0 {
		whole, frac = b[:i], b[i+1:]
		if len(frac) == 0 || len(frac) > 3 {
			return 0, bad("value %.20q: 1 to 3 decimals after the point", b)
		}
	}
	if len(whole) == 0 || len(whole) > 7 {
		return 0, bad("value %.20q is not a number up to %s", b, FormatValue(MaxValue))
	}
	var v int64
	for _, c := range whole {
		if c < '0' || c > '9' {
			return 0, bad("value %.20q is not a decimal number", b)
		}
		v = v*10 + int64(c-'0')
	}
	for i := range 3 {
		v *= 10
		if i < len(frac) {
			c := frac[i]
			if c < '0' || c > '9' {
				return 0, bad("value %.20q is not a decimal number", b)
			}
			v += int64(c - '0')
		}
	}
	if v > MaxValue {
		return 0, bad("value %.20q is over %s", b, FormatValue(MaxValue))
	}
	return int32(v), nil
}

// AppendValue appends v (thousandths) as a decimal with 3 decimals.
func AppendValue(dst []byte, v int32) []byte {
	x := int64(v)
	if x < 0 {
		dst, x = append(dst, '-'), -x
	}
	dst = strconv.AppendInt(dst, x/1000, 10)
	f := x % 1000
	return append(dst, '.', byte('0'+f/100), byte('0'+f/10%10), byte('0'+f%10))
}

// FormatValue is AppendValue as a string.
func FormatValue(v int32) string { return string(AppendValue(nil, v)) }

// AppendDef appends d as the words of its ALERT line after the verb:
// "id sym field op value [repeat hyst]", sym as symText.
func AppendDef(dst []byte, d *Def, symText []byte) []byte {
	dst = append(dst, d.ID...)
	dst = append(append(dst, ' '), symText...)
	dst = append(append(dst, ' '), d.Field.String()...)
	dst = append(append(dst, ' '), d.Op.String()...)
	dst = AppendValue(append(dst, ' '), d.Value)
	if d.Repeat {
		dst = AppendValue(append(dst, " repeat "...), d.Hyst)
	}
	return dst
}

// AppendFired appends f's client line, the symbol as symText:
//
//	FIRED id seq sym field=value t=ns n=k
//
// seq is the item's within its epoch, t its exchange send time, k the
// owner's fire number.
func AppendFired(dst []byte, f *Fired, symText []byte) []byte {
	dst = append(append(dst, "FIRED "...), f.ID...)
	dst = strconv.AppendUint(append(dst, ' '), f.Pos&(1<<32-1), 10)
	dst = append(append(dst, ' '), symText...)
	dst = append(append(append(dst, ' '), f.Field.String()...), '=')
	dst = AppendValue(dst, f.Value)
	dst = strconv.AppendInt(append(dst, " t="...), f.T, 10)
	dst = strconv.AppendUint(append(dst, " n="...), f.N, 10)
	return append(dst, '\n')
}

// ParseFired reads a FIRED line (without its newline); Pos is the seq
// (epoch 0), Sym is left 0 and the symbol returned as text.
func ParseFired(line []byte) (f Fired, symText []byte, err error) {
	w := bytes.Fields(line)
	if len(w) != 7 || string(w[0]) != "FIRED" || !bytes.HasPrefix(w[5], []byte("t=")) || !bytes.HasPrefix(w[6], []byte("n=")) {
		return f, nil, bad("not a FIRED line: %.80q", line)
	}
	f.ID, symText = string(w[1]), w[3]
	if f.Pos, err = strconv.ParseUint(string(w[2]), 10, 32); err != nil {
		return f, nil, bad("FIRED seq %.20q", w[2])
	}
	name, val, _ := bytes.Cut(w[4], []byte("="))
	var ok bool
	if f.Field, ok = ParseField(name); !ok {
		return f, nil, bad("FIRED field %.20q", w[4])
	}
	if f.Value, err = ParseValue(val); err != nil {
		return f, nil, err
	}
	if f.T, err = strconv.ParseInt(string(w[5][2:]), 10, 64); err != nil {
		return f, nil, bad("FIRED t %.20q", w[5])
	}
	if f.N, err = strconv.ParseUint(string(w[6][2:]), 10, 64); err != nil {
		return f, nil, bad("FIRED n %.20q", w[6])
	}
	return f, symText, nil
}
