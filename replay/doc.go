// Package replay records a live exchange feed to a capture file and plays a
// capture (or the root's PostgreSQL backup) back as an exchange, for load
// and soak tests.
//
// Recording (Recorder) logs in like a root (wire.AppendLogon, from FromSeq
// or the live edge), stamps every read with one receive time, as the root
// does, and appends each data frame verbatim with that time. A sequence gap
// or a dropped connection makes it log in again from last+1, so a capture
// is one increasing, normally contiguous run of positions (epoch, seq): the
// exchange's epoch changes (its logon reply, a Sequence Reset) are kept as
// the epochs of the records after them. Session frames (logon replies,
// heartbeats, resets) are not recorded: the player makes its own, a
// Sequence Reset where the epoch changes.
//
// Playing (Server) is the exchange simulator of package feed with its
// generator replaced (feed.Config.Source): logon, bad-auth refusal,
// retransmission from any held seq, "unavailable" below the first or
// beyond the published head, heartbeats and retention are the simulator's.
// The player publishes record i at start + (t_i - t_0)/Speed, t being the
// receive time (capture) or exch_send (Postgres), or as fast as possible
// with Max. With StartOnLogon (the default) the clock starts at the first
// successful logon. With Loop, pass k publishes seq + k*span (span = last -
// first + 1 of the selection) with the frame header's seq rewritten, so the
// stream stays one ever-increasing sequence; pass k+1 starts one mean
// inter-arrival time after pass k's last record. Bodies are otherwise sent
// verbatim (Restamp rewrites the send time to the publish time).
//
// Pacing error is actual publish offset minus scheduled offset, measured
// per frame when the frame is handed to the sessions. Go timers wake up to
// about 1 ms late, so expect a p50 of ~0.5-1 ms; Spin trades a core for
// tighter pacing.
//
// # Capture file format (version 2), little-endian
//
//	file    = header block* [index trailer]
//
//	header:
//	+--------+---------+-------------+--------+-----------+-----------+
//	| "TRCAP"| version | created     | srcLen | source    | CRC32C    |
//	| 5 B    | u16 (2) | i64 ns      | u16    | srcLen B  | u32       |
//	+--------+---------+-------------+--------+-----------+-----------+
//	 CRC32C (Castagnoli) covers everything before it. A reader refuses any
//	 version but 1 and 2: "capture format version 3, this tickrelay reads
//	 1..2". Version 1 is version 2 with every record in epoch 0.
//
//	block (44 B header + payload):
//	0      4      8      12         20     24          32         40      44
//	+------+------+------+----------+------+-----------+----------+-------+---------
//	|"BLK1"| len  | crc  | firstSeq | count| firstRecv | lastRecv | hcrc  | payload
//	|      | u32  | u32  | u64      | u32  | i64 ns    | i64 ns   | u32   | len B
//	+------+------+------+----------+------+-----------+----------+-------+---------
//	 crc  = CRC32C of the payload; hcrc = CRC32C of header bytes 0..39.
//	 firstSeq is a position: epoch << 32 | seq (wire.Pos), one epoch per
//	 block; each record's frame header carries the seq alone.
//	 payload = count records, seqs firstSeq, firstSeq+1, ... (contiguous):
//	   record = recvTime i64 ns | feed frame verbatim (len u16 | body)
//	 A block is written (no fsync) after FlushRecords records, FlushBytes
//	 payload bytes or FlushInterval of receive time; a seq jump starts a
//	 new block.
//
//	index (written by Close):
//	+--------+---------+--------+--------------------------------------------+
//	| "IDX1" | n u32   | crc u32| n x {firstSeq u64, offset u64, count u32,   |
//	|        |         |        |      size u32, firstRecv i64, lastRecv i64} |
//	+--------+---------+--------+--------------------------------------------+
//	 crc = CRC32C of the n entries (40 B each), one per block in file order.
//
//	trailer (last 32 B of a cleanly closed file):
//	+--------+--------------+-----------+-------------+----------+--------+
//	| "TEND" | indexOff u64 | blocks u32| records u64 | zero u32 | crc u32|
//	+--------+--------------+-----------+-------------+----------+--------+
//
// Open reads the index through the trailer. Without a valid trailer and
// index (a crash: the writer never closed) it rebuilds the index by
// scanning and verifying blocks from the header on; the scan stops at the
// first torn or corrupt block, and Reader.Damage names it with its byte
// offset (a *CorruptError, errors.Is ErrCorrupt) while every block before
// it stays readable. Cursors verify each block's CRC and records again when
// they load it, so damage behind a valid index is reported on read (or by
// Reader.Verify), naming the block's offset.
//
// # Concurrency
//
// A Writer is used by one goroutine. A Reader may be shared; each Cursor is
// used by one goroutine. A Server's player runs on one goroutine and is the
// only writer of the feed history; Progress and Summary may be read from
// anywhere (Summary is final once Done is closed).
package replay
