package wire

import (
	"bytes"
	"strconv"
)

// MaxLineLen bounds a client command line, newline included.
const MaxLineLen = 4096

// StampWidth is the fixed digit count of each stamp in a text frame.
const StampWidth = 19

// Stamps are the per-hop times of one item, ns since the Unix epoch, each on
// the clock of the host that took it (the child may correct root stamps).
type Stamps struct {
	ExchSend, RootRecv, RootSend, ChildRecv, ChildSend int64
}

// typeCode is the text name of each data message type.
func typeCode(t uint16) string {
	switch t {
	case TypeSecurityDefinition:
		return "SD"
	case TypeSecurityStatus:
		return "SS"
	case TypeAddOrder:
		return "AO"
	case TypeModifyOrder:
		return "MO"
	case TypeDeleteOrder:
		return "DO"
	case TypeNominalPrice:
		return "NP"
	case TypeTrade:
		return "TR"
	case TypeAggregateBook:
		return "BK"
	case TypeStatistics:
		return "ST"
	case TypeClosingPrice:
		return "CP"
	}
	return ""
}

func typeOfCode(c []byte) uint16 {
	if len(c) != 2 {
		return 0
	}
	for _, t := range []uint16{TypeSecurityDefinition, TypeSecurityStatus, TypeAddOrder, TypeModifyOrder,
		TypeDeleteOrder, TypeNominalPrice, TypeTrade, TypeAggregateBook, TypeStatistics, TypeClosingPrice} {
		if typeCode(t) == string(c) {
			return t
		}
	}
	return 0
}

// AppendSymbol appends the text symbol of a security code: at least five
// digits, zero-padded, as the exchange prints them ("00700").
func AppendSymbol(dst []byte, code uint32) []byte {
	for d := uint32(10000); d > 1 && code < d; d /= 10 {
		dst = append(dst, '0')
	}
	return strconv.AppendUint(dst, uint64(code), 10)
}

// ParseSymbol parses a numeric symbol back into its security code.
func ParseSymbol(s []byte) (uint32, bool) {
	if len(s) == 0 || len(s) > 10 {
		return 0, false
	}
	v, ok := parseUint(s)
	if !ok || v > 1<<32-1 {
		return 0, false
	}
	return uint32(v), true
}

// TextFrameCode returns the security code of a text frame ("TR 17 00005
// ..."): its third field, parsed. It decodes nothing else.
func TextFrameCode(frame []byte) (uint32, bool) {
	i := 0
	for range 2 {
		sp := bytes.IndexByte(frame[i:], ' ')
		if sp < 0 {
			return 0, false
		}
		i += sp + 1
	}
	end := i
	for end < len(frame) && frame[end] != ' ' && frame[end] != '\n' {
		end++
	}
	return ParseSymbol(frame[i:end])
}

// TextFrameSeq returns the seq of a text frame ("TR 17 00005 ..."): its
// second field, parsed. It decodes nothing else.
func TextFrameSeq(frame []byte) (uint64, bool) {
	sp := bytes.IndexByte(frame, ' ')
	if sp < 0 {
		return 0, false
	}
	end := sp + 1
	for end < len(frame) && frame[end] != ' ' && frame[end] != '\n' {
		end++
	}
	return parseUint(frame[sp+1 : end])
}

// MaxTextFrame bounds one text frame (a full book update is the longest).
const MaxTextFrame = 2048

// AppendTextFrame appends the client text frame of one item, newline
// included. It allocates nothing when dst has room (at most MaxTextFrame).
func AppendTextFrame(dst []byte, seq uint64, m *Msg, st Stamps) []byte {
	dst = append(dst, typeCode(m.Type)...)
	dst = append(dst, ' ')
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, ' ')
	dst = AppendSymbol(dst, m.Security)
	switch m.Type {
	case TypeSecurityDefinition:
		dst = appendText(dst, " mkt=", m.Market[:])
		dst = appendText(dst, " isin=", m.ISIN[:])
		dst = appendText(dst, " ccy=", m.Currency[:])
		dst = appendText(dst, " name=", m.Name[:])
		dst = appendUint(dst, " lot=", uint64(m.LotSize))
		dst = appendPrice(dst, " prev=", int64(m.PrevClose))
	case TypeSecurityStatus:
		dst = appendUint(dst, " susp=", uint64(m.Suspension))
	case TypeAddOrder:
		dst = appendUint(dst, " oid=", m.OrderID)
		dst = appendPrice(dst, " px=", int64(m.Price))
		dst = appendUint(dst, " qty=", uint64(m.Qty))
		dst = appendUint(dst, " side=", uint64(m.Side))
		dst = appendUint(dst, " ot=", uint64(m.OrderType))
		dst = appendInt(dst, " pos=", int64(m.BookPos))
	case TypeModifyOrder:
		dst = appendUint(dst, " oid=", m.OrderID)
		dst = appendUint(dst, " qty=", uint64(m.Qty))
		dst = appendUint(dst, " side=", uint64(m.Side))
		dst = appendInt(dst, " pos=", int64(m.BookPos))
	case TypeDeleteOrder:
		dst = appendUint(dst, " oid=", m.OrderID)
		dst = appendUint(dst, " side=", uint64(m.Side))
	case TypeNominalPrice:
		dst = appendPrice(dst, " px=", int64(m.Price))
	case TypeTrade:
		dst = appendUint(dst, " tid=", uint64(m.TradeID))
		dst = appendPrice(dst, " px=", int64(m.Price))
		dst = appendUint(dst, " qty=", uint64(m.Qty))
		dst = appendInt(dst, " tt=", int64(m.TrdType))
		dst = appendUint(dst, " time=", m.TradeTime)
	case TypeAggregateBook:
		dst = appendUint(dst, " n=", uint64(m.NumEntries))
		dst = append(dst, " e="...)
		for i := 0; i < int(m.NumEntries); i++ {
			e := &m.Entries[i]
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = strconv.AppendUint(dst, uint64(e.Side), 10)
			dst = append(dst, ':')
			dst = strconv.AppendUint(dst, uint64(e.Level), 10)
			dst = append(dst, ':')
			dst = strconv.AppendUint(dst, uint64(e.Action), 10)
			dst = append(dst, ':')
			dst = appendPrice(dst, "", int64(e.Price))
			dst = append(dst, ':')
			dst = strconv.AppendUint(dst, e.AggQty, 10)
			dst = append(dst, ':')
			dst = strconv.AppendUint(dst, uint64(e.NumOrders), 10)
		}
	case TypeStatistics:
		dst = appendUint(dst, " vol=", m.SharesTraded)
		dst = appendPrice(dst, " to=", m.Turnover)
		dst = appendPrice(dst, " hi=", int64(m.High))
		dst = appendPrice(dst, " lo=", int64(m.Low))
		dst = appendPrice(dst, " last=", int64(m.Last))
		dst = appendPrice(dst, " vwap=", int64(m.VWAP))
		dst = appendUint(dst, " ssv=", uint64(m.ShortShares))
		dst = appendPrice(dst, " sst=", m.ShortTurnover)
	case TypeClosingPrice:
		dst = appendPrice(dst, " px=", int64(m.Price))
		dst = appendUint(dst, " trades=", uint64(m.NumberOfTrades))
	}
	dst = append(dst, " t="...)
	dst = appendStamp(dst, st.ExchSend)
	dst = append(dst, ',')
	dst = appendStamp(dst, st.RootRecv)
	dst = append(dst, ',')
	dst = appendStamp(dst, st.RootSend)
	dst = append(dst, ',')
	dst = appendStamp(dst, st.ChildRecv)
	dst = append(dst, ',')
	dst = appendStamp(dst, st.ChildSend)
	return append(dst, '\n')
}

// SetChildSend overwrites the child send stamp of a complete text frame
// (built by AppendTextFrame) in place.
func SetChildSend(frame []byte, t int64) {
	putStamp(frame[len(frame)-1-StampWidth:len(frame)-1], t)
}

func appendText(dst []byte, key string, v []byte) []byte {
	dst = append(dst, key...)
	v = bytes.TrimRight(v, " \x00")
	for _, c := range v {
		switch {
		case c == ' ':
			c = '_'
		case c <= ' ' || c >= 0x7f || c == '_' || c == '=' || c == ',':
			c = '?' // not representable; the text form is lossy here by design
		}
		dst = append(dst, c)
	}
	return dst
}

func appendUint(dst []byte, key string, v uint64) []byte {
	return strconv.AppendUint(append(dst, key...), v, 10)
}

func appendInt(dst []byte, key string, v int64) []byte {
	return strconv.AppendInt(append(dst, key...), v, 10)
}

// appendPrice writes v with 3 implied decimals: 62500 -> "62.500".
func appendPrice(dst []byte, key string, v int64) []byte {
	dst = append(dst, key...)
	u := uint64(v)
	if v < 0 {
		dst = append(dst, '-')
		u = -u
	}
	dst = strconv.AppendUint(dst, u/1000, 10)
	f := u % 1000
	return append(dst, '.', byte('0'+f/100), byte('0'+f/10%10), byte('0'+f%10))
}

func appendStamp(dst []byte, t int64) []byte {
	n := len(dst)
	dst = append(dst, "0000000000000000000"...)
	putStamp(dst[n:], t)
	return dst
}

// putStamp writes t as StampWidth digits; negative or too large clamps to 0.
func putStamp(b []byte, t int64) {
	u := uint64(t)
	if t < 0 {
		u = 0
	}
	for i := StampWidth - 1; i >= 0; i-- {
		b[i] = byte('0' + u%10)
		u /= 10
	}
}

// DecodeTextFrame parses a text frame (with or without its newline) into m
// and returns its seq and stamps. Keys must come in the order
// AppendTextFrame writes them; re-encoding a decoded frame is stable.
func DecodeTextFrame(line []byte, m *Msg) (seq uint64, st Stamps, err error) {
	line = bytes.TrimSuffix(line, []byte{'\n'})
	p := textParser{rest: line}
	*m = Msg{Type: typeOfCode(p.word())}
	if m.Type == 0 {
		return 0, st, errorf("text frame", ErrUnknownType, "%.20q", line)
	}
	seq = p.uint(" seq", 1<<64-1)
	code, ok := ParseSymbol(p.word())
	if !ok && p.err == nil {
		p.fail("symbol")
	}
	m.Security = code
	switch m.Type {
	case TypeSecurityDefinition:
		p.text("mkt", m.Market[:])
		p.text("isin", m.ISIN[:])
		p.text("ccy", m.Currency[:])
		p.text("name", m.Name[:])
		m.LotSize = uint32(p.uint("lot", 1<<32-1))
		m.PrevClose = int32(p.price("prev", 1<<31-1))
	case TypeSecurityStatus:
		m.Suspension = uint8(p.uint("susp", 255))
	case TypeAddOrder:
		m.OrderID = p.uint("oid", 1<<64-1)
		m.Price = int32(p.price("px", 1<<31-1))
		m.Qty = uint32(p.uint("qty", 1<<32-1))
		m.Side = uint16(p.uint("side", 1<<16-1))
		m.OrderType = uint8(p.uint("ot", 255))
		m.BookPos = int32(p.int("pos", 1<<31-1))
	case TypeModifyOrder:
		m.OrderID = p.uint("oid", 1<<64-1)
		m.Qty = uint32(p.uint("qty", 1<<32-1))
		m.Side = uint16(p.uint("side", 1<<16-1))
		m.BookPos = int32(p.int("pos", 1<<31-1))
	case TypeDeleteOrder:
		m.OrderID = p.uint("oid", 1<<64-1)
		m.Side = uint16(p.uint("side", 1<<16-1))
	case TypeNominalPrice:
		m.Price = int32(p.price("px", 1<<31-1))
	case TypeTrade:
		m.TradeID = uint32(p.uint("tid", 1<<32-1))
		m.Price = int32(p.price("px", 1<<31-1))
		m.Qty = uint32(p.uint("qty", 1<<32-1))
		m.TrdType = int16(p.int("tt", 1<<15-1))
		m.TradeTime = p.uint("time", 1<<64-1)
	case TypeAggregateBook:
		m.NumEntries = uint8(p.uint("n", MaxBookEntries))
		p.entries(m)
	case TypeStatistics:
		m.SharesTraded = p.uint("vol", 1<<64-1)
		m.Turnover = p.price("to", 1<<63-1)
		m.High = int32(p.price("hi", 1<<31-1))
		m.Low = int32(p.price("lo", 1<<31-1))
		m.Last = int32(p.price("last", 1<<31-1))
		m.VWAP = int32(p.price("vwap", 1<<31-1))
		m.ShortShares = uint32(p.uint("ssv", 1<<32-1))
		m.ShortTurnover = p.price("sst", 1<<63-1)
	case TypeClosingPrice:
		m.Price = int32(p.price("px", 1<<31-1))
		m.NumberOfTrades = uint32(p.uint("trades", 1<<32-1))
	}
	st = p.stamps()
	if p.err == nil && len(p.rest) != 0 {
		p.fail("trailing bytes")
	}
	return seq, st, p.err
}

// textParser consumes space-separated "key=value" words in a fixed order.
type textParser struct {
	rest []byte
	err  error
}

func (p *textParser) fail(what string) {
	if p.err == nil {
		p.err = errorf("text frame", ErrSyntax, "bad %s", what)
	}
}

// word returns the next space-separated word.
func (p *textParser) word() []byte {
	if p.err != nil {
		return nil
	}
	i := bytes.IndexByte(p.rest, ' ')
	if i < 0 {
		w := p.rest
		p.rest = nil
		return w
	}
	w := p.rest[:i]
	p.rest = p.rest[i+1:]
	return w
}

// value returns the value of the next word, which must be key=value.
func (p *textParser) value(key string) []byte {
	w := p.word()
	if p.err != nil {
		return nil
	}
	if len(w) <= len(key) || string(w[:len(key)]) != key || w[len(key)] != '=' {
		p.fail(key)
		return nil
	}
	return w[len(key)+1:]
}

func (p *textParser) uint(key string, max uint64) uint64 {
	var v []byte
	if key[0] == ' ' { // bare word, no key
		v = p.word()
	} else {
		v = p.value(key)
	}
	if p.err != nil {
		return 0
	}
	u, ok := parseUint(v)
	if !ok || u > max {
		p.fail(key)
	}
	return u
}

func (p *textParser) int(key string, max int64) int64 {
	v := p.value(key)
	if p.err != nil {
		return 0
	}
	i, ok := parseInt(v)
	if !ok || i > max || i < -max-1 {
		p.fail(key)
	}
	return i
}

func (p *textParser) price(key string, max int64) int64 {
	v := p.value(key)
	if p.err != nil {
		return 0
	}
	i, ok := parsePrice(v)
	if !ok || i > max || i < -max-1 {
		p.fail(key)
	}
	return i
}

func (p *textParser) text(key string, dst []byte) {
	v := p.value(key)
	if p.err != nil {
		return
	}
	if len(v) > len(dst) {
		p.fail(key)
		return
	}
	for i := range dst {
		dst[i] = ' '
	}
	for i, c := range v {
		switch {
		case c == '_':
			c = ' '
		case c <= ' ' || c >= 0x7f || c == '=' || c == ',':
			// appendText never writes these; accepting them would make
			// decode -> encode -> decode change the value.
			p.fail(key)
			return
		}
		dst[i] = c
	}
}

func (p *textParser) entries(m *Msg) {
	v := p.value("e")
	if p.err != nil {
		return
	}
	for i := 0; i < int(m.NumEntries); i++ {
		var e []byte
		if j := bytes.IndexByte(v, ','); j >= 0 && i < int(m.NumEntries)-1 {
			e, v = v[:j], v[j+1:]
		} else {
			e, v = v, nil
		}
		var f [6][]byte
		for k := 0; k < 5; k++ {
			j := bytes.IndexByte(e, ':')
			if j < 0 {
				p.fail("book entry")
				return
			}
			f[k], e = e[:j], e[j+1:]
		}
		f[5] = e
		side, ok1 := parseUint(f[0])
		lvl, ok2 := parseUint(f[1])
		act, ok3 := parseUint(f[2])
		px, ok4 := parsePrice(f[3])
		qty, ok5 := parseUint(f[4])
		n, ok6 := parseUint(f[5])
		if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || side > 1<<16-1 || lvl > 255 || act > 255 ||
			px > 1<<31-1 || px < -1<<31 || n > 1<<32-1 {
			p.fail("book entry")
			return
		}
		m.Entries[i] = BookEntry{AggQty: qty, Price: int32(px), NumOrders: uint32(n),
			Side: uint16(side), Level: uint8(lvl), Action: uint8(act)}
	}
	if len(v) != 0 {
		p.fail("book entries")
	}
}

func (p *textParser) stamps() (st Stamps) {
	v := p.value("t")
	if p.err != nil {
		return st
	}
	if len(v) != 5*StampWidth+4 {
		p.fail("stamps")
		return st
	}
	var ts [5]int64
	for i := range ts {
		d := v[i*(StampWidth+1) : i*(StampWidth+1)+StampWidth]
		u, ok := parseUint(d)
		if !ok || u > 1<<63-1 || (i < 4 && v[i*(StampWidth+1)+StampWidth] != ',') {
			p.fail("stamps")
			return st
		}
		ts[i] = int64(u)
	}
	return Stamps{ts[0], ts[1], ts[2], ts[3], ts[4]}
}

// parseUint parses decimal digits only (no sign, no empty), without allocating.
func parseUint(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (1<<64-1-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}

func parseInt(b []byte) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	u, ok := parseUint(b)
	if !ok || u > 1<<63 || (!neg && u == 1<<63) {
		return 0, false
	}
	if neg {
		return -int64(u), true
	}
	return int64(u), true
}

// parsePrice parses "[-]int.ddd" (exactly three decimals) into thousandths.
// Values outside the int64 range are rejected, never wrapped.
func parsePrice(b []byte) (int64, bool) {
	if len(b) < 5 || b[len(b)-4] != '.' {
		return 0, false
	}
	neg := b[0] == '-'
	ip := b[:len(b)-4]
	if neg {
		ip = ip[1:]
	}
	whole, ok1 := parseUint(ip) // rejects "" ("-.123", ".123") and signs
	frac, ok2 := parseUint(b[len(b)-3:])
	if !ok1 || !ok2 || whole > (1<<64-1-frac)/1000 {
		return 0, false
	}
	u := whole*1000 + frac
	if neg {
		if u == 0 || u > 1<<63 { // "-0.000" is never written
			return 0, false
		}
		return -int64(u), true
	}
	if u > 1<<63-1 {
		return 0, false
	}
	return int64(u), true
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }
