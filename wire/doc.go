// Package wire defines every byte format tickrelay speaks: exchange feed
// frames and the OMD-style messages inside them, root<->child relay frames,
// and client text lines. It does no I/O.
//
// Decoders are stateless functions over an accumulated buffer: they either
// return one complete unit and the number of bytes it used, or ErrShort when
// more bytes are needed, consuming nothing. That makes them resume across any
// split a socket (or gnet) hands them. Malformed input yields an error that
// wraps one of the sentinel errors below, never a panic.
//
// # Feed frame (exchange -> root), little-endian
//
//	0      2             10            18       20       22
//	+------+-------------+-------------+--------+--------+------------
//	| len  | seq         | sendTime    | msgSize| msgType| fields ...
//	| u16  | u64         | i64 (ns)    | u16    | u16    | msgSize-4 B
//	+------+-------------+-------------+--------+--------+------------
//	       |<------------------- body (len bytes) ------------------->|
//
// FeedHeaderSize (16) + MsgHeaderSize (4) <= len <= MaxFeedBody, and
// msgSize == len - 16. seq is the exchange's sequence number within its
// epoch (see epoch.go: a trading session; the exchange numbers from 1 again
// in each), the one sequence every root, child and client agrees on; data
// messages start at seq 1, at most MaxSeq.
//
// Session messages share the frame: seq 0 and a session msgType.
//
//	Logon         (client->exchange) user [16]B, password [16]B, startSeq u64, epoch u32
//	LogonReply    (exchange->client) status u16, nextSeq u64, epoch u32, reason (rest)
//	Heartbeat     (exchange->client) nextSeq u64; sent when the line is idle
//	SequenceReset (exchange->client, type 100) epoch u32, nextSeq u64: a new epoch
//
// # Relay frame (root <-> child), little-endian
//
//	+-----------+------+----------------
//	| len u32   | type | payload (len-1)
//	+-----------+------+----------------
//
//	Hello     'H' child->root  fromSeq u64, epoch u32 (0: the current), name (rest)
//	Batch     'B' root->child  rootSend i64, count u32, epoch u32, count x item
//	                           item: rootRecv i64, bodyLen u16, feed body
//	Reset     'Z' root->child  epoch u32, seq u64, prevEpoch u32, prevLast u64
//	Heartbeat 'K' root->child  headSeq u64 (a position), rootTime i64
//	TimeReq   'T' child->root  t0 i64
//	TimeReply 'R' root->child  t0 i64, t1 i64, t2 i64
//	Error     'E' either way   code u16, seq u64 (a position), reason (rest)
//
// Items in a batch carry consecutive sequence numbers and rootRecv <=
// rootSend; a batch that breaks either is rejected (ErrStamps). The item
// encoding (RelayItemSize and AppendRelayItem) is what the root's ring stores,
// so a batch is a header followed by ring slots verbatim.
//
// # Client text lines (child <-> client), one per '\n'
//
// Client -> child, at most MaxLineLen bytes:
//
//	SUB sym...            image of each symbol, then "OK SUB sym seq epoch", then updates > seq
//	UNSUB sym...          "OK UNSUB sym"
//	RESUME [epoch:]seq sym...  every update of syms from seq on (no image), after "OK RESUME seq epoch"
//	PING                  "PONG"
//	TIME t0               "TIME t0 t1 t2" (child clock, ns)
//
// Child -> client, one frame per item:
//
//	<type> <seq> <sym> key=value ... t=<exch>,<rootRecv>,<rootSend>,<childRecv>,<childSend>
//
// The five stamps are fixed-width (19 digits) so the child send stamp can be
// written into a frame that is already built. Errors are "ERR <CODE> <reason>".
// At a new epoch: "RESET <epoch> <seq> <prev epoch> <prev last>", after the
// last epoch's frames.
package wire
