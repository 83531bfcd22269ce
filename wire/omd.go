package wire

import (
	"encoding/binary"
)

// OMD-style data message types (after the HKEX OMD-C numbering).
const (
	TypeSecurityDefinition uint16 = 11
	TypeSecurityStatus     uint16 = 21
	TypeAddOrder           uint16 = 30
	TypeModifyOrder        uint16 = 31
	TypeDeleteOrder        uint16 = 32
	TypeNominalPrice       uint16 = 40
	TypeTrade              uint16 = 50
	TypeAggregateBook      uint16 = 53
	TypeStatistics         uint16 = 60
	TypeClosingPrice       uint16 = 62
)

// MaxBookEntries bounds the entries of one aggregate order book update.
const MaxBookEntries = 20

// Field sizes of each fixed-size message (after the 4-byte message header).
const (
	sizeSecurityDefinition = 4 + 4 + 12 + 3 + 1 + 40 + 4 + 4
	sizeSecurityStatus     = 8
	sizeAddOrder           = 28
	sizeModifyOrder        = 24
	sizeDeleteOrder        = 16
	sizeNominalPrice       = 8
	sizeTrade              = 28
	sizeStatistics         = 48
	sizeClosingPrice       = 12
	sizeBookHeader         = 8
	sizeBookEntry          = 24
	sizeLogon              = logonFields
)

// BookEntry is one price level change of an aggregate order book update.
type BookEntry struct {
	AggQty    uint64
	Price     int32 // 3 implied decimals
	NumOrders uint32
	Side      uint16 // 0 bid, 1 offer
	Level     uint8
	Action    uint8 // 0 new, 1 change, 2 delete, 74 clear
}

// Msg is every data message in one flat struct, so decoding allocates
// nothing. Type says which fields are meaningful; the others stay zero.
// Prices are int32 with 3 implied decimals.
type Msg struct {
	Type     uint16
	Security uint32

	// Security definition.
	Market    [4]byte
	ISIN      [12]byte
	Currency  [3]byte
	Name      [40]byte // space-padded
	LotSize   uint32
	PrevClose int32

	Suspension uint8 // security status: 2 halt, 3 resume

	// Orders and trades.
	OrderID   uint64
	Price     int32 // add order, trade, nominal, closing price
	Qty       uint32
	Side      uint16
	OrderType uint8
	BookPos   int32
	TradeID   uint32
	TrdType   int16
	TradeTime uint64

	// Statistics.
	SharesTraded   uint64
	Turnover       int64
	High, Low      int32
	Last, VWAP     int32
	ShortShares    uint32
	ShortTurnover  int64
	NumberOfTrades uint32 // closing price

	NumEntries uint8
	Entries    [MaxBookEntries]BookEntry
}

// IsDataType reports whether t is a data message type this package knows.
func IsDataType(t uint16) bool {
	switch t {
	case TypeSecurityDefinition, TypeSecurityStatus, TypeAddOrder, TypeModifyOrder,
		TypeDeleteOrder, TypeNominalPrice, TypeTrade, TypeAggregateBook,
		TypeStatistics, TypeClosingPrice:
		return true
	}
	return false
}

// checkMsgSize validates the field size n of a message of type t.
func checkMsgSize(t uint16, n int, fields []byte) error {
	want := 0
	switch t {
	case TypeLogon:
		want = sizeLogon
	case TypeLogonReply:
		if n < logonReplyFields {
			return errorf("feed frame", ErrTruncated, "logon reply fields %d < %d", n, logonReplyFields)
		}
		return nil
	case TypeHeartbeat:
		want = 8
	case TypeSequenceReset:
		want = sequenceResetFields
	case TypeSecurityDefinition:
		want = sizeSecurityDefinition
	case TypeSecurityStatus:
		want = sizeSecurityStatus
	case TypeAddOrder:
		want = sizeAddOrder
	case TypeModifyOrder:
		want = sizeModifyOrder
	case TypeDeleteOrder:
		want = sizeDeleteOrder
	case TypeNominalPrice:
		want = sizeNominalPrice
	case TypeTrade:
		want = sizeTrade
	case TypeStatistics:
		want = sizeStatistics
	case TypeClosingPrice:
		want = sizeClosingPrice
	case TypeAggregateBook:
		if n < sizeBookHeader {
			return errorf("feed frame", ErrTruncated, "book update fields %d < %d", n, sizeBookHeader)
		}
		entries := int(fields[7])
		if entries > MaxBookEntries {
			return errorf("feed frame", ErrTooLarge, "book update has %d entries > %d", entries, MaxBookEntries)
		}
		want = sizeBookHeader + entries*sizeBookEntry
	default:
		return errorf("feed frame", ErrUnknownType, "type %d", t)
	}
	if n != want {
		return errorf("feed frame", ErrTruncated, "type %d has %d field bytes, want %d", t, n, want)
	}
	return nil
}

// SecurityOf returns the security code of a data body without decoding the
// rest (every data message starts with it). ok is false for session messages.
func SecurityOf(body []byte) (code uint32, ok bool) {
	if len(body) < MinFeedBody+4 {
		return 0, false
	}
	if !IsDataType(binary.LittleEndian.Uint16(body[18:])) {
		return 0, false
	}
	return binary.LittleEndian.Uint32(body[MinFeedBody:]), true
}

// DecodeMsg decodes the message of a feed body into m, which it overwrites
// completely. body must be valid per ParseFeedBody (NextFeedFrame checked it);
// DecodeMsg checks again so it is safe on untrusted bytes.
func DecodeMsg(body []byte, m *Msg) (FeedHeader, error) {
	h, err := ParseFeedBody(body)
	if err != nil {
		return h, err
	}
	if !IsDataType(h.MsgType) {
		return h, errorf("message", ErrUnknownType, "type %d is not a data message", h.MsgType)
	}
	*m = Msg{Type: h.MsgType}
	f := body[MinFeedBody:]
	le := binary.LittleEndian
	m.Security = le.Uint32(f)
	switch h.MsgType {
	case TypeSecurityDefinition:
		copy(m.Market[:], f[4:8])
		copy(m.ISIN[:], f[8:20])
		copy(m.Currency[:], f[20:23])
		copy(m.Name[:], f[24:64])
		m.LotSize = le.Uint32(f[64:])
		m.PrevClose = int32(le.Uint32(f[68:]))
	case TypeSecurityStatus:
		m.Suspension = f[4]
	case TypeAddOrder:
		m.OrderID = le.Uint64(f[4:])
		m.Price = int32(le.Uint32(f[12:]))
		m.Qty = le.Uint32(f[16:])
		m.Side = le.Uint16(f[20:])
		m.OrderType = f[22]
		m.BookPos = int32(le.Uint32(f[24:]))
	case TypeModifyOrder:
		m.OrderID = le.Uint64(f[4:])
		m.Qty = le.Uint32(f[12:])
		m.Side = le.Uint16(f[16:])
		m.BookPos = int32(le.Uint32(f[20:]))
	case TypeDeleteOrder:
		m.OrderID = le.Uint64(f[4:])
		m.Side = le.Uint16(f[12:])
	case TypeNominalPrice:
		m.Price = int32(le.Uint32(f[4:]))
	case TypeTrade:
		m.TradeID = le.Uint32(f[4:])
		m.Price = int32(le.Uint32(f[8:]))
		m.Qty = le.Uint32(f[12:])
		m.TrdType = int16(le.Uint16(f[16:]))
		m.TradeTime = le.Uint64(f[20:])
	case TypeAggregateBook:
		m.NumEntries = f[7]
		for i := 0; i < int(m.NumEntries); i++ {
			e := f[sizeBookHeader+i*sizeBookEntry:]
			m.Entries[i] = BookEntry{
				AggQty:    le.Uint64(e),
				Price:     int32(le.Uint32(e[8:])),
				NumOrders: le.Uint32(e[12:]),
				Side:      le.Uint16(e[16:]),
				Level:     e[18],
				Action:    e[19],
			}
		}
	case TypeStatistics:
		m.SharesTraded = le.Uint64(f[4:])
		m.Turnover = int64(le.Uint64(f[12:]))
		m.High = int32(le.Uint32(f[20:]))
		m.Low = int32(le.Uint32(f[24:]))
		m.Last = int32(le.Uint32(f[28:]))
		m.VWAP = int32(le.Uint32(f[32:]))
		m.ShortShares = le.Uint32(f[36:])
		m.ShortTurnover = int64(le.Uint64(f[40:]))
	case TypeClosingPrice:
		m.Price = int32(le.Uint32(f[4:]))
		m.NumberOfTrades = le.Uint32(f[8:])
	}
	return h, nil
}

// AppendMsgFrame appends a complete feed frame carrying m. It returns dst
// unchanged and false if m.Type is not a data type or has too many entries.
func AppendMsgFrame(dst []byte, seq uint64, sendTime int64, m *Msg) ([]byte, bool) {
	n := msgFieldSize(m)
	if n < 0 || seq == 0 {
		return dst, false
	}
	le := binary.LittleEndian
	dst = le.AppendUint16(dst, uint16(MinFeedBody+n))
	dst = appendFeedHeader(dst, seq, sendTime, m.Type, n)
	start := len(dst)
	dst = append(dst, make([]byte, n)...) // zeroed fillers; no alloc once dst has room
	f := dst[start:]
	le.PutUint32(f, m.Security)
	switch m.Type {
	case TypeSecurityDefinition:
		copy(f[4:8], m.Market[:])
		copy(f[8:20], m.ISIN[:])
		copy(f[20:23], m.Currency[:])
		copy(f[24:64], m.Name[:])
		le.PutUint32(f[64:], m.LotSize)
		le.PutUint32(f[68:], uint32(m.PrevClose))
	case TypeSecurityStatus:
		f[4] = m.Suspension
	case TypeAddOrder:
		le.PutUint64(f[4:], m.OrderID)
		le.PutUint32(f[12:], uint32(m.Price))
		le.PutUint32(f[16:], m.Qty)
		le.PutUint16(f[20:], m.Side)
		f[22] = m.OrderType
		le.PutUint32(f[24:], uint32(m.BookPos))
	case TypeModifyOrder:
		le.PutUint64(f[4:], m.OrderID)
		le.PutUint32(f[12:], m.Qty)
		le.PutUint16(f[16:], m.Side)
		le.PutUint32(f[20:], uint32(m.BookPos))
	case TypeDeleteOrder:
		le.PutUint64(f[4:], m.OrderID)
		le.PutUint16(f[12:], m.Side)
	case TypeNominalPrice:
		le.PutUint32(f[4:], uint32(m.Price))
	case TypeTrade:
		le.PutUint32(f[4:], m.TradeID)
		le.PutUint32(f[8:], uint32(m.Price))
		le.PutUint32(f[12:], m.Qty)
		le.PutUint16(f[16:], uint16(m.TrdType))
		le.PutUint64(f[20:], m.TradeTime)
	case TypeAggregateBook:
		f[7] = m.NumEntries
		for i := 0; i < int(m.NumEntries); i++ {
			e := f[sizeBookHeader+i*sizeBookEntry:]
			x := &m.Entries[i]
			le.PutUint64(e, x.AggQty)
			le.PutUint32(e[8:], uint32(x.Price))
			le.PutUint32(e[12:], x.NumOrders)
			le.PutUint16(e[16:], x.Side)
			e[18] = x.Level
			e[19] = x.Action
		}
	case TypeStatistics:
		le.PutUint64(f[4:], m.SharesTraded)
		le.PutUint64(f[12:], uint64(m.Turnover))
		le.PutUint32(f[20:], uint32(m.High))
		le.PutUint32(f[24:], uint32(m.Low))
		le.PutUint32(f[28:], uint32(m.Last))
		le.PutUint32(f[32:], uint32(m.VWAP))
		le.PutUint32(f[36:], m.ShortShares)
		le.PutUint64(f[40:], uint64(m.ShortTurnover))
	case TypeClosingPrice:
		le.PutUint32(f[4:], uint32(m.Price))
		le.PutUint32(f[8:], m.NumberOfTrades)
	}
	return dst, true
}

func msgFieldSize(m *Msg) int {
	switch m.Type {
	case TypeSecurityDefinition:
		return sizeSecurityDefinition
	case TypeSecurityStatus:
		return sizeSecurityStatus
	case TypeAddOrder:
		return sizeAddOrder
	case TypeModifyOrder:
		return sizeModifyOrder
	case TypeDeleteOrder:
		return sizeDeleteOrder
	case TypeNominalPrice:
		return sizeNominalPrice
	case TypeTrade:
		return sizeTrade
	case TypeStatistics:
		return sizeStatistics
	case TypeClosingPrice:
		return sizeClosingPrice
	case TypeAggregateBook:
		if m.NumEntries > MaxBookEntries {
			return -1
		}
		return sizeBookHeader + int(m.NumEntries)*sizeBookEntry
	}
	return -1
}
