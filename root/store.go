package root

// Store is the durable history beneath the ring (the bbolt journal).
type Store interface {
	// Append adds one item in seq order; it buffers for group commit and must not block the feed path for long.
	Append(seq uint64, rootRecv int64, body []byte) error
	// LastSeq is the highest seq appended (0 when empty); after restart, the highest durable one.
	LastSeq() uint64
	// Range calls fn for each stored item with seq >= from in order until fn returns false;
	// item is the relay item encoding (wire.AppendRelayItem: rootRecv, bodyLen, body) and valid only during fn.
	Range(from uint64, fn func(seq uint64, item []byte) bool) error
}
