package frames

import (
	"sync/atomic"

	"tickrelay/control"
	"tickrelay/internal/prefault"
	"tickrelay/wire"
)

// FrameRef locates one text frame in a Batch: Buf[Off:End].
type FrameRef struct {
	Seq      uint64
	Hash     uint64 // xxhash of the frame's symbol text (SymbolHash)
	Off, End int32
}

// Batch is the parsed form of the relay batches of one read (up to
// batchBytes of frames): their text frames back to back (child send stamp
// still zero) and where each starts. A Batch is immutable once published to
// the loops; each loop releases its reference after its drain and the last
// one recycles it.
type Batch struct {
	Buf       []byte
	Frames    []FrameRef
	ChildRecv int64  // when its first relay batch arrived
	Last      uint64 // seq of its last item (with or without a frame)
	// Reset, when set, makes this a marker with no frames: the epoch
	// changed here (the loops tell their clients, in order with frames).
	Reset *wire.ResetLine
	// Children, when set, makes this a marker with the child directory's
	// CHILDREN line; Push: the set changed (WATCH CHILDREN clients get it).
	Children []byte
	Push     bool
	// Control, when set, makes this a marker with a control record (or a
	// snapshot) for the loops' group replicas, in its place in the stream.
	Control *ControlMark
	refs    atomic.Int32
}

// ControlMark is a control record a Batch carries: Record, or with
// Snapshot the state as of Record.Serial of Record.Era, Live its members.
type ControlMark struct {
	Record   control.Record
	Snapshot bool
	Live     []control.Record
}

// batchFree recycles Batches with their grown buffers. A bounded free list
// rather than a sync.Pool: the pool empties at every GC, and regrowing each
// batch's buffer from nothing (growslice, zeroing) cost ~20% of a child's
// CPU under load. At most cap(batchFree) batches (each capped at
// maxKeptBatch bytes) stay cached.
var batchFree = make(chan *Batch, 256)

// maxKeptBatch is the largest buffer a recycled batch keeps.
const maxKeptBatch = 1 << 20

// GetBatch returns an empty batch from the free list (or a new one).
func GetBatch() *Batch {
	select {
	case b := <-batchFree:
		b.Buf, b.Frames, b.Reset, b.Children, b.Push, b.Control = b.Buf[:0], b.Frames[:0], nil, nil, false, nil
		return b
	default:
		b := &Batch{Buf: make([]byte, 0, BatchBytes+wire.MaxTextFrame), Frames: make([]FrameRef, 0, 512)}
		prefault.Populate(b.Buf[:cap(b.Buf)])
		prefault.Slice(b.Frames[:cap(b.Frames)])
		return b
	}
}

// Share sets how many readers (event loops) will Release b: n >= 1.
func (b *Batch) Share(n int) { b.refs.Store(int32(n)) }

// Release drops one reader's reference; the last recycles b.
func (b *Batch) Release() {
	if b.refs.Add(-1) > 0 {
		return
	}
	if cap(b.Buf) > maxKeptBatch {
		return
	}
	select {
	case batchFree <- b:
	default:
	}
}

// Len returns the number of frames.
func (b *Batch) Len() int { return len(b.Frames) }

// Frame returns frame i and its seq; the bytes alias the batch.
func (b *Batch) Frame(i int) (uint64, []byte) {
	f := b.Frames[i]
	return f.Seq, b.Buf[f.Off:f.End]
}

// BatchBytes is the size of frames at which the relay publishes its open
// batch without waiting for the read buffer to run dry: the buffer GetBatch
// starts with.
const BatchBytes = 64 << 10
