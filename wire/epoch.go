package wire

// An epoch is the exchange's session id: a trading day, or a part of one
// after a Sequence Reset (HKEX OMD message type 100). The exchange numbers
// its items from 1 again in each epoch, and its epochs only grow. The
// simulator's epoch is its start time in Unix seconds, plus one per reset;
// a real exchange adapter may use YYYYMMDD*100 + resets.
//
// Inside tickrelay an item is known by its position: the epoch and the seq
// in one uint64, the epoch in the high half. Positions order items across
// epochs as seqs order them within one, the seqs of an epoch are
// consecutive positions, and a change of epoch is a jump only a reset
// announces. Epoch 0 holds what was stored before epochs existed.

// MaxSeq is the highest seq an epoch may carry (the low half of a position).
const MaxSeq = 1<<32 - 1

// Pos is the position of seq in epoch.
func Pos(epoch uint32, seq uint64) uint64 { return uint64(epoch)<<32 | seq&MaxSeq }

// PosEpoch is the epoch of position p.
func PosEpoch(p uint64) uint32 { return uint32(p >> 32) }

// PosSeq is the seq of position p within its epoch.
func PosSeq(p uint64) uint64 { return p & MaxSeq }

// PosItems is the count of items after position from up to position to
// (0 when to is not after from). Across epochs it counts only to's epoch:
// the end of from's is not known from the positions alone.
func PosItems(from, to uint64) uint64 {
	switch {
	case to <= from:
		return 0
	case PosEpoch(to) == PosEpoch(from):
		return to - from
	}
	return PosSeq(to)
}
