package session

import (
	"context"
	"log/slog"
	"time"
)

// warnBurst is how many per-client lines a loop logs per second; the rest
// are counted and reported in one line: a thousand clients cut at once cost
// a few lines, not a thousand.
const warnBurst = 10

// warner rate-limits a loop's per-client log lines.
type warner struct {
	log     *slog.Logger
	at      int64 // window start
	n       int
	dropped int
}

func (w *warner) logf(now int64, level slog.Level, msg string, args ...any) {
	if now-w.at >= int64(time.Second) {
		if w.dropped > 0 {
			w.log.Warn("per-client log lines suppressed", "count", w.dropped, "per", "1s")
		}
		w.at, w.n, w.dropped = now, 0, 0
	}
	if w.n++; w.n > warnBurst {
		w.dropped++
		return
	}
	w.log.Log(context.Background(), level, msg, args...)
}
