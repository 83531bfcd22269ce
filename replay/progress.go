package replay

import (
	"fmt"
	"time"
)

// String renders a one-line progress report: position (seq and frames of
// the total), percentage, average rate and ETA when the total is known.
func (p Progress) String() string {
	rate := 0.0
	if p.Elapsed > 0 {
		rate = float64(p.Frames) / p.Elapsed.Seconds()
	}
	s := fmt.Sprintf("seq %d  %d frames", p.Seq, p.Frames)
	if p.Total > 0 {
		pct := 100 * float64(p.Frames) / float64(p.Total)
		s = fmt.Sprintf("%s %5.1f%%  seq %d  %d/%d frames", bar(pct), pct, p.Seq, p.Frames, p.Total)
	}
	s += fmt.Sprintf("  %s frames/s  %s", si(rate), bytesSI(p.Bytes))
	if p.Total > p.Frames && rate > 0 {
		s += "  ETA " + (time.Duration(float64(p.Total-p.Frames) / rate * 1e9)).Round(time.Second).String()
	}
	return s
}

func bar(pct float64) string {
	const w = 20
	n := int(pct / 100 * w)
	n = min(max(n, 0), w)
	b := make([]byte, w+2)
	b[0], b[w+1] = '[', ']'
	for i := range w {
		b[i+1] = ' '
		if i < n {
			b[i+1] = '#'
		}
	}
	return string(b)
}

func si(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

func bytesSI(b uint64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%d B", b)
}
