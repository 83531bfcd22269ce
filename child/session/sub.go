package session

import (
	"slices"

	"tickrelay/child/frames"
	"tickrelay/wire"
)

// sub runs SUB sym...: each symbol's image (every image for "*"), then
// "OK SUB sym P", then every update after P. The image is taken under the
// core's read lock together with its LastSeq P, and the subscription
// delivers only seq > P: queued frames the image already covers are
// skipped, later ones flow.
func sub(l *Loop, cl *Client, cmd *wire.Command, _ int64) {
	if cl.stale {
		l.subscribeStale(cl, cmd)
		return
	}
	now := l.cfg.Now()
	all := slices.ContainsFunc(cmd.Symbols, isAll)
	var p uint64
	l.atSnapshot(cl, all, now, func(c *frames.Core, at uint64) {
		p = at
		for i, sym := range cmd.Symbols {
			cl.sym = frames.CanonicalSymbol(cl.sym[:0], sym)
			// A client on "*" has every symbol's image and updates
			// already: an image now would repeat frames still queued.
			l.subscribeAt(c, cl, cl.hashes[i], cl.sym, isAll(sym), !all && !cl.all, p, now)
		}
	})
	if all {
		l.f.covered(cl, p)
	}
}

// subscribeStale records a conflated client's SUB or RESUME: its resync
// will send the images and OKs of all its subscriptions; replies now would
// only pile up unread.
func (l *Loop) subscribeStale(cl *Client, cmd *wire.Command) {
	for i, sym := range cmd.Symbols {
		cl.sym = frames.CanonicalSymbol(cl.sym[:0], sym)
		l.f.subscribe(cl, cl.hashes[i], cl.sym, isAll(sym), l.src.LastSeq())
	}
}

func unsub(l *Loop, cl *Client, cmd *wire.Command, _ int64) {
	for i, sym := range cmd.Symbols {
		cl.sym = frames.CanonicalSymbol(cl.sym[:0], sym)
		l.f.unsubscribe(cl, cl.hashes[i], isAll(sym))
		cl.out = wire.AppendOK(cl.out, wire.CmdUnsub, cl.sym, 0)
	}
}

// subscribeAt subscribes cl to the canonical symbol sym (or to "*": all)
// from seq p on and appends what a SUB answers: the symbol's image (when
// image; "*"'s comes from atSnapshot), then "OK SUB sym p". It runs under
// the core's read lock (c), in the hold that took p, so the image and the
// subscription meet exactly at p.
func (l *Loop) subscribeAt(c *frames.Core, cl *Client, hash uint64, sym []byte, all, image bool, p uint64, now int64) {
	if image && !all {
		cl.out = c.AppendImage(cl.out, sym, now)
	}
	l.f.subscribe(cl, hash, sym, all, p)
	cl.out = wire.AppendOK(cl.out, wire.CmdSub, sym, p)
}

// imagePart is how many symbols' images atSnapshot builds per hold of the
// core's read lock (~0.15 ms): SUB * at HKEX scale (17k symbols, 7 MB)
// took 11 ms in one hold, as long a stall for the relay lines and, behind
// their waiting writer, every loop's SUB.
const imagePart = 512

// atSnapshot runs then under the core's read lock with P = LastSeq. With
// all it first appends SUB *'s image to cl.out: every symbol's, imagePart
// symbols per hold, then the history frames each part missed
// (Core.AppendMissed), then runs then in the last hold: the image stands as
// if taken at P in one hold. Should the history no longer hold what the
// parts missed, it images everything again in that hold.
func (l *Loop) atSnapshot(cl *Client, all bool, now int64, then func(c *frames.Core, p uint64)) {
	if !all {
		l.src.Read(func(c *frames.Core) { then(c, c.LastSeq()) })
		return
	}
	start := len(cl.out)
	var cuts []frames.ImageCut
	for from, more := uint32(0), true; more; {
		l.src.Read(func(c *frames.Core) {
			cuts = append(cuts, frames.ImageCut{From: from, Seq: c.LastSeq()})
			cl.out, from, more = c.AppendImages(cl.out, from, imagePart, now)
			if more {
				return
			}
			out, ok := c.AppendMissed(cl.out, cuts, now)
			if !ok {
				out = c.AppendAllImages(cl.out[:start], now)
			}
			cl.out = out
			then(c, c.LastSeq())
		})
	}
}
