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
// skipped, later ones flow. "*" is streamed instead (subAll).
func sub(l *Loop, cl *Client, cmd *wire.Command, _ int64) {
	if cmd.Group != nil {
		subGroup(l, cl, cmd)
		return
	}
	cl.subbed = true
	if cl.stale {
		l.subscribeStale(cl, cmd)
		return
	}
	if slices.ContainsFunc(cmd.Symbols, isAll) {
		l.subAll(cl, cmd)
		return
	}
	now := l.cfg.Now()
	l.src.Read(func(c *frames.Core) {
		p := c.LastSeq()
		for i, sym := range cmd.Symbols {
			cl.sym = frames.CanonicalSymbol(cl.sym[:0], sym)
			// A client on "*" has every symbol's image and updates
			// already: an image now would repeat frames still queued.
			l.subscribeAt(c, cl, cl.hashes[i], cl.sym, !cl.all, p, now)
		}
	})
}

// subAll answers a SUB with "*" as a stream paced by the client's socket
// and the loop's catch-up budget:
// the loop's shared image of every symbol at P0 (allImage), then the
// history after P0 as for a client behind (behind.go), then the OKs of the
// line's symbols at the P the history reached, then every update after it.
// Nothing of it is copied for the client but what its socket refuses of a
// write chunk: a thousand "SUB *" from clients that do not read cost a
// thousand socket-fulls, not a thousand images in memory.
func (l *Loop) subAll(cl *Client, cmd *wire.Command) {
	l.writeOut(cl) // earlier replies go first
	if cl.dead {
		return
	}
	img, p0 := l.allImage()
	if !cl.grant.Everything() {
		img = cl.grant.FilterFrames(nil, img) // its own: the shared one is every symbol's
	}
	for i, sym := range cmd.Symbols {
		cl.sym = frames.CanonicalSymbol(cl.sym[:0], sym)
		l.f.subscribe(cl, cl.hashes[i], cl.sym, isAll(sym), p0)
		if !slices.ContainsFunc(cl.oks, func(s []byte) bool { return string(s) == string(cl.sym) }) {
			cl.oks = append(cl.oks, append([]byte(nil), cl.sym...))
		}
	}
	l.f.covered(cl, p0) // the image covers the named ones up to p0
	l.stream(cl, img, p0)
}

// stream puts cl behind on img, the shared image at p0: the next passes
// over the clients behind send it, then the history after p0, then cl.oks
// where it levels (behind.go). The image may pass MaxPending by its own
// size: it is the reply the client asked for.
func (l *Loop) stream(cl *Client, img []byte, p0 uint64) {
	cl.img, cl.grace = img, max(cl.grace, len(img))
	l.owe(cl, p0+1, 0)
}

// allImageSeqs is how far the feed may move on before a loop builds a new
// shared image for "SUB *" (a newer client catches up the rest from the
// history: at most this many seqs).
const allImageSeqs = 2048

// allImage returns the loop's image of every symbol as at seq p0, built
// again once the feed has moved allImageSeqs past it. The bytes are shared
// by every client streaming them and never written to; a frame's child
// send stamp is the time the image was built.
func (l *Loop) allImage() ([]byte, uint64) {
	if l.img.buf != nil && l.src.LastSeq()-l.img.p <= allImageSeqs {
		return l.img.buf, l.img.p
	}
	buf := make([]byte, 0, len(l.img.buf)+len(l.img.buf)/8+64<<10)
	l.appendAllImages(&buf, l.cfg.Now(), func(_ *frames.Core, p uint64) { l.img.p = p })
	l.img.buf = buf
	return l.img.buf, l.img.p
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
	if cmd.Group != nil {
		unsubGroup(l, cl, cmd)
		return
	}
	for i, sym := range cmd.Symbols {
		cl.sym = frames.CanonicalSymbol(cl.sym[:0], sym)
		l.f.unsubscribe(cl, cl.hashes[i], isAll(sym))
		cl.out = wire.AppendOK(cl.out, wire.CmdUnsub, cl.sym, 0, 0)
	}
}

// subscribeAt subscribes cl to the canonical symbol sym from seq p on and
// appends what a SUB answers: the symbol's image (when image), then
// "OK SUB sym p" ("*" is streamed instead: subAll). It runs under
// the core's read lock (c), in the hold that took p, so the image and the
// subscription meet exactly at p.
func (l *Loop) subscribeAt(c *frames.Core, cl *Client, hash uint64, sym []byte, image bool, p uint64, now int64) {
	if image {
		cl.out = c.AppendImage(cl.out, sym, now)
	}
	l.f.subscribe(cl, hash, sym, false, p)
	cl.out = wire.AppendOK(cl.out, wire.CmdSub, sym, p, l.epoch)
}

// imagePart is how many symbols' images atSnapshot builds per hold of the
// core's read lock (~0.15 ms): SUB * at HKEX scale (17k symbols, 7 MB)
// took 11 ms in one hold, as long a stall for the relay lines and, behind
// their waiting writer, every loop's SUB.
const imagePart = 512

// appendAllImages appends to *dst every symbol's image, imagePart symbols
// per hold of the core's read lock, then the history frames each part
// missed (Core.AppendMissed), and runs then in the last hold (it may append
// to *dst too): the image stands as if taken at P = LastSeq in one hold.
// Should the history no longer hold what the parts missed, it images
// everything again in that hold.
func (l *Loop) appendAllImages(dst *[]byte, now int64, then func(c *frames.Core, p uint64)) {
	start := len(*dst)
	var cuts []frames.ImageCut
	for from, more := uint32(0), true; more; {
		l.src.Read(func(c *frames.Core) {
			// The send stamp is taken in each hold: the frames a later
			// hold appends may have arrived after an earlier one.
			now = max(now, l.cfg.Now())
			cuts = append(cuts, frames.ImageCut{From: from, Seq: c.LastSeq()})
			*dst, from, more = c.AppendImages(*dst, from, imagePart, now)
			if more {
				return
			}
			out, ok := c.AppendMissed(*dst, cuts, now)
			if !ok {
				out = c.AppendAllImages((*dst)[:start], now)
			}
			*dst = out
			then(c, c.LastSeq())
		})
	}
}
