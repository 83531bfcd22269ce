package session

// Batcher writes many connections' bytes with one system call (an
// io_uring submission) where the loop would make a write(2) each.
type Batcher interface {
	// Add queues b for c, which the batcher may refuse (false: the loop
	// writes it itself), e.g. a connection holding unsent bytes, which
	// must go first. b stays valid until Submit returns.
	Add(c Conn, b []byte) bool
	// Submit writes everything added. What a socket did not take goes to
	// its Conn.Write, as the rest of a short write(2) would: buffered
	// there, or the connection closed on an error.
	Submit()
}

// batch adds cl's frames of this flush to the loop's Batch, when there is
// one and cl's socket took all it was given last time; it reports whether
// it did. Larger outs go the usual way, in write chunks.
func (l *Loop) batch(cl *Client, out []byte) bool {
	if l.cfg.Batch == nil || cl.full || len(out) > writeChunk || !l.cfg.Batch.Add(cl.conn, out) {
		return false
	}
	l.batched = append(l.batched, cl)
	return true
}

// submitBatch writes what batch added, then applies the slow-client
// policy to those clients as send's callers do.
func (l *Loop) submitBatch() {
	if len(l.batched) == 0 {
		return
	}
	l.cfg.Batch.Submit()
	for _, cl := range l.batched {
		if cl.conn != nil {
			l.checkSlow(cl, l.unsent(cl))
		}
	}
	clear(l.batched)
	l.batched = l.batched[:0]
}
