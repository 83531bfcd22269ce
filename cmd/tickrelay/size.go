package main

import (
	"flag"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// sizeFlag is an integer flag that takes a unit: "4MiB", "8GiB" (powers of
// 1024), "10M", "64k" (powers of 1000), with or without a trailing B, or a
// plain number.
type sizeFlag[T int | int64 | uint64] struct{ p *T }

// sizeVar defines a size flag (see sizeFlag) stored in *p.
func sizeVar[T int | int64 | uint64](fs *flag.FlagSet, p *T, name string, value T, usage string) {
	*p = value
	fs.Var(sizeFlag[T]{p}, name, usage+" (units: KiB, MiB, GiB, or k, M, G)")
}

func (f sizeFlag[T]) String() string {
	if f.p == nil {
		return "0"
	}
	return strconv.FormatUint(uint64(*f.p), 10)
}

func (f sizeFlag[T]) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	var max uint64 = math.MaxInt64
	switch any(*f.p).(type) {
	case int:
		max = math.MaxInt
	case uint64:
		max = math.MaxUint64
	}
	if n > max {
		return fmt.Errorf("%s is too large", s)
	}
	*f.p = T(n)
	return nil
}

var sizeUnits = []struct {
	suffix string
	mult   uint64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
	{"ki", 1 << 10}, {"mi", 1 << 20}, {"gi", 1 << 30}, {"ti", 1 << 40},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12},
	{"k", 1e3}, {"m", 1e6}, {"g", 1e9}, {"t", 1e12},
	{"b", 1},
}

// parseSize parses a non-negative size with an optional unit.
func parseSize(s string) (uint64, error) {
	num, mult := strings.ToLower(strings.TrimSpace(s)), uint64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSpace(num[:len(num)-len(u.suffix)]), u.mult
			break
		}
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size (e.g. 4MiB, 10M, 65536)", s)
	}
	if n > math.MaxUint64/mult {
		return 0, fmt.Errorf("%s is too large", s)
	}
	return n * mult, nil
}
