package replay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Version is the capture format version this package writes. Version 2
// keys blocks by position (wire.Pos: the epoch in the high 32 bits of
// firstSeq); version 1, written before epochs, is read as epoch 0.
const Version uint16 = 2

// minVersion is the oldest version this package reads.
const minVersion uint16 = 1

// Magic opens every capture file.
const Magic = "TRCAP"

// Layout constants (see the package comment).
const (
	fileHeaderFixed = 5 + 2 + 8 + 2 // magic, version, created, source length
	maxSource       = 1024          // bytes of the header's source string
	blockHeaderSize = 44
	indexHeaderSize = 12
	indexEntrySize  = 40
	trailerSize     = 32
	recordHeader    = 8 // recvTime i64 before each frame
	// MaxBlockPayload bounds a block's payload; a length above it is corrupt.
	MaxBlockPayload = 8 << 20
)

var (
	tagBlock   = [4]byte{'B', 'L', 'K', '1'}
	tagIndex   = [4]byte{'I', 'D', 'X', '1'}
	tagTrailer = [4]byte{'T', 'E', 'N', 'D'}
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// ErrCorrupt is wrapped by every error about damaged capture bytes
// (CorruptError); errors.Is(err, ErrCorrupt) tells damage from I/O errors.
var ErrCorrupt = errors.New("corrupt capture")

// CorruptError names the byte offset in a capture where damage starts.
type CorruptError struct {
	Path   string
	Offset int64  // byte offset of the damaged structure
	What   string // "block header", "block payload", "index", "trailer", "file header", "record"
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("capture %s: %s at byte offset %d: %s", e.Path, e.What, e.Offset, e.Reason)
}

// Unwrap makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptError) Unwrap() error { return ErrCorrupt }

// VersionError refuses a capture of another format version.
type VersionError struct {
	Path string
	Got  uint16
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("capture %s: capture format version %d, this tickrelay reads %d..%d", e.Path, e.Got, minVersion, Version)
}

// BlockInfo describes one block: where it is and what it holds. The index
// is a list of them.
type BlockInfo struct {
	Offset    int64  // byte offset of the block header
	FirstSeq  uint64 // seq of the first record
	Count     uint32 // records
	Size      uint32 // payload bytes
	FirstRecv int64  // receive time of the first record, ns
	LastRecv  int64  // receive time of the last record, ns
}

// LastSeq is the seq of the block's last record (records are contiguous
// within a block).
func (b BlockInfo) LastSeq() uint64 { return b.FirstSeq + uint64(b.Count) - 1 }

// blockHeader layout:
//
//	0 tag [4]  4 len u32  8 crc u32  12 firstSeq u64  20 count u32
//	24 firstRecv i64  32 lastRecv i64  40 headerCRC u32
func putBlockHeader(dst []byte, b BlockInfo, payloadCRC uint32) {
	le := binary.LittleEndian
	copy(dst[0:4], tagBlock[:])
	le.PutUint32(dst[4:], b.Size)
	le.PutUint32(dst[8:], payloadCRC)
	le.PutUint64(dst[12:], b.FirstSeq)
	le.PutUint32(dst[20:], b.Count)
	le.PutUint64(dst[24:], uint64(b.FirstRecv))
	le.PutUint64(dst[32:], uint64(b.LastRecv))
	le.PutUint32(dst[40:], crc(dst[:40]))
}

// parseBlockHeader checks the header's own CRC and bounds; why is empty
// when it is sound.
func parseBlockHeader(h []byte, off int64) (b BlockInfo, payloadCRC uint32, why string) {
	le := binary.LittleEndian
	if [4]byte(h[0:4]) != tagBlock {
		return b, 0, fmt.Sprintf("bad block tag %q", h[0:4])
	}
	if got, want := le.Uint32(h[40:]), crc(h[:40]); got != want {
		return b, 0, fmt.Sprintf("block header CRC32C mismatch (stored %08x, computed %08x)", got, want)
	}
	b = BlockInfo{
		Offset:    off,
		Size:      le.Uint32(h[4:]),
		FirstSeq:  le.Uint64(h[12:]),
		Count:     le.Uint32(h[20:]),
		FirstRecv: int64(le.Uint64(h[24:])),
		LastRecv:  int64(le.Uint64(h[32:])),
	}
	switch {
	case b.Size == 0 || b.Size > MaxBlockPayload:
		return b, 0, fmt.Sprintf("block payload length %d out of range 1..%d", b.Size, MaxBlockPayload)
	case b.Count == 0 || b.FirstSeq == 0:
		return b, 0, fmt.Sprintf("block of %d records from seq %d", b.Count, b.FirstSeq)
	}
	return b, le.Uint32(h[8:]), ""
}

func putIndexEntry(dst []byte, b BlockInfo) {
	le := binary.LittleEndian
	le.PutUint64(dst[0:], b.FirstSeq)
	le.PutUint64(dst[8:], uint64(b.Offset))
	le.PutUint32(dst[16:], b.Count)
	le.PutUint32(dst[20:], b.Size)
	le.PutUint64(dst[24:], uint64(b.FirstRecv))
	le.PutUint64(dst[32:], uint64(b.LastRecv))
}

func parseIndexEntry(src []byte) BlockInfo {
	le := binary.LittleEndian
	return BlockInfo{
		FirstSeq:  le.Uint64(src[0:]),
		Offset:    int64(le.Uint64(src[8:])),
		Count:     le.Uint32(src[16:]),
		Size:      le.Uint32(src[20:]),
		FirstRecv: int64(le.Uint64(src[24:])),
		LastRecv:  int64(le.Uint64(src[32:])),
	}
}
