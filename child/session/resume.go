package session

import (
	"fmt"
	"math"
	"slices"

	"tickrelay/child/frames"
	"tickrelay/wire"
)

// resumePart is how many seqs of history RESUME scans per hold of the
// core's read lock (~0.6 ms; the whole 64 MiB history took 12 ms).
const resumePart = 16384

// resume runs RESUME seq sym...: the history from seq (or ERR GONE), then
// every update after it.
func resume(l *Loop, cl *Client, cmd *wire.Command, _ int64) {
	if cl.stale {
		l.subscribeStale(cl, cmd)
		return
	}
	if cmd.Epoch != 0 && cmd.Epoch != l.epoch {
		l.replyErr(cl, wire.ErrCodeGone, fmt.Sprintf("epoch %d is not held; the current epoch is %d", cmd.Epoch, l.epoch))
		return
	}
	now := l.cfg.Now()
	all := slices.ContainsFunc(cmd.Symbols, isAll)
	n := len(cl.hashes) // cmd.Symbols' hashes (distinct); cl.hashes[n:]: the same, sorted, for the history's matching
	cl.hashes = append(cl.hashes, cl.hashes...)
	match := cl.hashes[n:]
	slices.Sort(match)
	at := len(cl.out)
	out := wire.AppendOK(cl.out, wire.CmdResume, nil, cmd.Seq, l.epoch)
	// The history in parts of resumePart seqs, each in a hold of the core's
	// read lock; P is LastSeq in the hold that reaches it.
	next, ok, done := cmd.Seq, true, false
	var p, oldest uint64
	for !done {
		l.src.Read(func(c *frames.Core) {
			now = l.cfg.Now() // in the hold: after every frame it may copy arrived
			out, next, ok = c.AppendHistoryWhere(out, next, now, resumePart, math.MaxInt, func(_, h uint64, frame []byte) bool {
				_, named := slices.BinarySearch(match, h)
				return named || all && cl.grant.AllowsFrame(frame)
			})
			if done = !ok || next > c.LastSeq(); done {
				p, oldest = c.LastSeq(), c.OldestSeq()
			}
		})
	}
	if !ok {
		cl.out = cl.out[:at]
		l.replyErr(cl, wire.ErrCodeGone, fmt.Sprintf("seq %d is no longer held; oldest %d, last %d", cmd.Seq, oldest, p))
		return
	}
	cl.out = out
	if !cl.subbed && l.m.ResumeArrivals != nil {
		l.m.ResumeArrivals.Inc()
	}
	cl.subbed = true
	from := max(p, cmd.Seq-1)
	for i, sym := range cmd.Symbols {
		cl.sym = frames.CanonicalSymbol(cl.sym[:0], sym)
		l.f.subscribe(cl, cl.hashes[i], cl.sym, isAll(sym), from)
	}
	if all {
		l.f.covered(cl, p) // the history covered the named ones up to p (not from: a future seq)
	}
}
