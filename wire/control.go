package wire

import "encoding/binary"

// Control-stream relay frames (package control encodes their bodies):
//
//	ControlSync     'Y' child->root  era u64, serial u64: the control records it has applied (sent before Hello)
//	ControlReq      'Q' child->root  an op to sequence
//	Control         'C' root->child  a sequenced record, sent after the items up to its After
//	ControlSnapshot 'S' root->child  the state as of a serial, for a child that cannot catch up record by record
const (
	RelayControlSync     byte = 'Y'
	RelayControlReq      byte = 'Q'
	RelayControl         byte = 'C'
	RelayControlSnapshot byte = 'S'
)

// AppendRelayFrame appends a relay frame of type typ around payload.
func AppendRelayFrame(dst []byte, typ byte, payload []byte) []byte {
	return append(appendRelayHeader(dst, typ, len(payload)), payload...)
}

// AppendControlSync appends a ControlSync frame.
func AppendControlSync(dst []byte, era, serial uint64) []byte {
	dst = appendRelayHeader(dst, RelayControlSync, 16)
	dst = binary.LittleEndian.AppendUint64(dst, era)
	return binary.LittleEndian.AppendUint64(dst, serial)
}

// ParseControlSync decodes a ControlSync payload.
func ParseControlSync(p []byte) (era, serial uint64) {
	return binary.LittleEndian.Uint64(p), binary.LittleEndian.Uint64(p[8:])
}
