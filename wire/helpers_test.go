package wire

import (
	"errors"
	"testing"
)

// pad returns s space-padded (or cut) to n bytes, as the exchange pads text.
func pad(s string, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = ' '
	}
	copy(b, s)
	return b
}

func book(n int) Msg {
	m := Msg{Type: TypeAggregateBook, Security: 700, NumEntries: uint8(n)}
	for i := 0; i < n; i++ {
		m.Entries[i] = BookEntry{
			AggQty:    uint64(1000*i + 1),
			Price:     int32(-1<<31 + 17*i),
			NumOrders: uint32(1<<32 - 1 - i),
			Side:      uint16(i % 2),
			Level:     uint8(i + 1),
			Action:    uint8([]int{0, 1, 2, 74}[i%4]),
		}
	}
	if n > 0 {
		m.Entries[0].Price = 1<<31 - 1
	}
	return m
}

// sampleMsgs holds one message of every data type with every meaningful
// field set (extreme values where it matters), plus empty and full books.
// Text fields are printable and space padded so the text form is lossless.
func sampleMsgs() []Msg {
	var sd Msg
	sd.Type, sd.Security = TypeSecurityDefinition, 700
	copy(sd.Market[:], pad("MAIN", 4))
	copy(sd.ISIN[:], pad("HK0000069689", 12))
	copy(sd.Currency[:], pad("HKD", 3))
	copy(sd.Name[:], pad("TENCENT HOLDINGS LTD", 40))
	sd.LotSize, sd.PrevClose = 100, 380_200

	full := book(MaxBookEntries)
	return []Msg{
		sd,
		{Type: TypeSecurityStatus, Security: 5, Suspension: 2},
		{Type: TypeAddOrder, Security: 1<<32 - 1, OrderID: 1<<64 - 1, Price: -1 << 31, Qty: 1<<32 - 1, Side: 1, OrderType: 2, BookPos: -1},
		{Type: TypeModifyOrder, Security: 0, OrderID: 42, Qty: 300, Side: 0, BookPos: 1<<31 - 1},
		{Type: TypeDeleteOrder, Security: 99999, OrderID: 7, Side: 1},
		{Type: TypeNominalPrice, Security: 100000, Price: 62_500},
		{Type: TypeTrade, Security: 388, TradeID: 123456, Price: 1<<31 - 1, Qty: 500, TrdType: -32768, TradeTime: 1<<64 - 1},
		book(0),
		book(1),
		full,
		{Type: TypeStatistics, Security: 2800, SharesTraded: 1<<64 - 1, Turnover: -1 << 63, High: 1<<31 - 1, Low: -1 << 31,
			Last: -1, VWAP: 999, ShortShares: 12, ShortTurnover: 1<<63 - 1},
		{Type: TypeClosingPrice, Security: 1, Price: -500, NumberOfTrades: 1<<32 - 1},
	}
}

func typeName(t uint16) string {
	if c := typeCode(t); c != "" {
		return c
	}
	return "type" + itoa(int64(t))
}

// wantErr fails unless err wraps kind (and is a *Error, so it has detail).
func wantErr(t *testing.T, err, kind error) {
	t.Helper()
	if err == nil {
		t.Fatalf("got nil error, want %v", kind)
	}
	if !errors.Is(err, kind) {
		t.Fatalf("got %v, want it to wrap %v", err, kind)
	}
	var we *Error
	if !errors.As(err, &we) {
		t.Fatalf("got %T %v, want *wire.Error", err, err)
	}
	if err.Error() == "" {
		t.Fatal("empty error text")
	}
}
