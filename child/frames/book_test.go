package frames

import (
	"testing"

	"tickrelay/wire"
)

func TestBookImage(t *testing.T) {
	var s symState
	m := wire.Msg{Type: wire.TypeAggregateBook, NumEntries: 3}
	m.Entries[0] = wire.BookEntry{AggQty: 10, Price: 100, NumOrders: 1, Side: 0, Level: 1, Action: 0}
	m.Entries[1] = wire.BookEntry{AggQty: 20, Price: 101, NumOrders: 2, Side: 1, Level: 1, Action: 0}
	m.Entries[2] = wire.BookEntry{AggQty: 30, Price: 99, NumOrders: 3, Side: 0, Level: 2, Action: 1}
	s.applyBook(&m)
	m.NumEntries = 1
	m.Entries[0] = wire.BookEntry{Side: 0, Level: 1, Action: 2}
	s.applyBook(&m)
	if s.book[0][0] != (wire.BookEntry{}) || s.book[0][1].AggQty != 30 || s.book[1][0].AggQty != 20 {
		t.Fatalf("book %v", s.book)
	}
	m.Entries[0] = wire.BookEntry{Action: 74}
	s.applyBook(&m)
	if s.book != ([2][bookLevels]wire.BookEntry{}) {
		t.Fatal("clear")
	}
}
