// Package feedtest is the deterministic test feed the child's tests share:
// seq n's message, its symbol, its feed body and its relay item.
package feedtest

import (
	"slices"

	"tickrelay/wire"
)

// Symbols is the number of securities of the test feed (codes 1..N).
const Symbols = 20

// Msg is the deterministic message of seq in the test feed.
func Msg(seq uint64) wire.Msg {
	m := wire.Msg{Security: uint32((seq*7+seq/3)%Symbols) + 1}
	switch seq % 4 {
	case 0:
		m.Type, m.Price = wire.TypeNominalPrice, int32(seq)
	case 1:
		m.Type, m.TradeID, m.Price, m.Qty, m.TradeTime = wire.TypeTrade, uint32(seq), int32(1000+seq), 100, seq
	case 2:
		m.Type, m.NumEntries = wire.TypeAggregateBook, 1
		m.Entries[0] = wire.BookEntry{AggQty: seq, Price: int32(seq), NumOrders: 2, Side: uint16(seq / 4 % 2), Level: uint8(seq%5 + 1), Action: 1}
	case 3:
		m.Type, m.SharesTraded, m.Turnover, m.High, m.Low, m.Last = wire.TypeStatistics, seq, int64(seq*10), 5, 1, 3
	}
	return m
}

// Sym is the symbol text of seq's message ("00008").
func Sym(seq uint64) string {
	return string(wire.AppendSymbol(nil, Msg(seq).Security))
}

// Body is the feed body of seq (headers and message).
func Body(seq uint64) []byte {
	m := Msg(seq)
	f, ok := wire.AppendMsgFrame(nil, seq, int64(seq)*1000+1_700_000_000_000_000_000, &m)
	if !ok {
		panic("test message does not encode")
	}
	return f[wire.FeedLenSize:]
}

// Item is seq's relay item, received by the root at 5.
func Item(seq uint64) wire.Item {
	body := Body(seq)
	h, _ := wire.ParseFeedBody(body)
	return wire.Item{Seq: seq, ExchSend: h.SendTime, RootRecv: 5, Body: body}
}

// Seqs are the seqs after from up to to whose symbol is among syms ("*":
// every seq): what a subscriber of syms gets of that run.
func Seqs(from, to uint64, syms ...string) []uint64 {
	var out []uint64
	for s := from + 1; s <= to; s++ {
		if slices.Contains(syms, "*") || slices.Contains(syms, Sym(s)) {
			out = append(out, s)
		}
	}
	return out
}
