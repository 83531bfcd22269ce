// Package feed is the exchange side of tickrelay: a deterministic model of an
// OMD-style market (Generator, a pure core with no clock and no I/O) and the
// exchange simulator (Server) that publishes it over TCP with logon and
// retransmission.
//
// # Generator
//
// Message i (1-based) of a Generator is the i-th call to Next; it gets seq i.
// The stream for a GenConfig is identical on every run. It opens with one
// Security Definition per symbol (codes 1..Symbols), then a market mix:
// add/modify/delete orders against per-symbol books (a modify or delete only
// names an order that was added to that symbol's book and is still open),
// aggregate book updates, trades, nominal prices, statistics, and now and
// then a halt/resume Security Status. When Total is set, the last Symbols
// messages up to Total are one Closing Price per symbol. Symbol popularity is
// Zipf-like: a few symbols carry much of the traffic, in an order shuffled by
// the seed. Prices random-walk on an HKEX-like tick ladder, 3 implied
// decimals.
//
// # Server
//
// The Server generates one shared history at the configured pace, whether or
// not anyone is connected, and keeps it as an append-only log of complete
// frames. Every logged-in session is a cursor into that log: retransmission
// and live delivery are the same loop, writing contiguous runs of frames with
// one write call. A slow session only falls behind itself.
package feed

import (
	"fmt"
	"math"
	"math/rand/v2"

	"tickrelay/wire"
)

// Book capacity per symbol: open orders the model tracks.
const bookCap = 32

// GenConfig configures a Generator.
type GenConfig struct {
	Seed    int64
	Symbols int // securities, codes 1..Symbols
	// Total is the planned length of the stream (0: endless). The last
	// Symbols messages up to Total are closing prices; after Total the
	// market mix simply continues.
	Total uint64
	// StartTime is the simulated trading clock at seq 1, ns since the epoch
	// (0: 2026-01-02 01:30 UTC, a 09:30 HKT open). TradeTime of a trade at
	// seq i is StartTime + i*TickTime.
	StartTime int64
	TickTime  int64 // simulated ns per message (0: 10 µs)
	// Zipf skew of symbol popularity (s > 1; 0: 1.2) and its offset
	// (v >= 1; 0: 5); larger v flattens the head.
	ZipfS, ZipfV float64
}

// Validate checks the config.
func (c GenConfig) Validate() error {
	switch {
	case c.Symbols < 1 || c.Symbols > 1<<20:
		return fmt.Errorf("feed: Symbols %d: want 1..%d", c.Symbols, 1<<20)
	case c.TickTime < 0:
		return fmt.Errorf("feed: TickTime %d < 0", c.TickTime)
	case c.ZipfS != 0 && c.ZipfS <= 1:
		return fmt.Errorf("feed: ZipfS %v: want > 1 (or 0 for the default)", c.ZipfS)
	case c.ZipfV != 0 && c.ZipfV < 1:
		return fmt.Errorf("feed: ZipfV %v: want >= 1 (or 0 for the default)", c.ZipfV)
	}
	return nil
}

type order struct {
	id    uint64
	price int32
	qty   uint32
	side  uint16
}

// symbol is the model state of one security.
type symbol struct {
	code      uint32
	price     int32 // last/nominal, 3 implied decimals
	prevClose int32
	lot       uint32
	halted    bool
	norders   int
	orders    [bookCap]order
	// Statistics.
	volume   uint64
	turnover int64
	high     int32
	low      int32
	trades   uint32
}

// Generator produces the deterministic message stream. It is not safe for
// concurrent use.
type Generator struct {
	cfg     GenConfig
	rng     *rand.Rand
	zipf    *rand.Zipf
	rank    []int32 // popularity rank -> symbol index
	syms    []symbol
	seq     uint64
	orderID uint64
	tradeID uint32
	closeAt uint64 // first seq of the closing phase (0: none)
}

// NewGenerator returns a generator for cfg. It panics if cfg is invalid
// (see GenConfig.Validate); Symbols 0 is taken as 1.
func NewGenerator(cfg GenConfig) *Generator {
	if cfg.Symbols == 0 {
		cfg.Symbols = 1
	}
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	if cfg.StartTime == 0 {
		cfg.StartTime = 1767317400 * 1e9 // 2026-01-02T01:30:00Z
	}
	if cfg.TickTime == 0 {
		cfg.TickTime = 10_000
	}
	if cfg.ZipfS == 0 {
		cfg.ZipfS = 1.2
	}
	if cfg.ZipfV == 0 {
		cfg.ZipfV = 5
	}
	rng := rand.New(rand.NewPCG(uint64(cfg.Seed), 0x6665656467656e31)) // "feedgen1"
	g := &Generator{
		cfg:  cfg,
		rng:  rng,
		zipf: rand.NewZipf(rng, cfg.ZipfS, cfg.ZipfV, uint64(cfg.Symbols-1)),
		rank: make([]int32, cfg.Symbols),
		syms: make([]symbol, cfg.Symbols),
	}
	for i := range g.rank {
		g.rank[i] = int32(i)
	}
	rng.Shuffle(len(g.rank), func(i, j int) { g.rank[i], g.rank[j] = g.rank[j], g.rank[i] })
	lots := [...]uint32{100, 200, 400, 500, 1000, 2000}
	for i := range g.syms {
		s := &g.syms[i]
		s.code = uint32(i + 1)
		// Log-uniform opening price between 0.5 and 500.
		p := int32(math.Exp(math.Log(500) + rng.Float64()*math.Log(1000)))
		s.price = roundTick(p)
		s.prevClose = s.price
		s.high, s.low = s.price, s.price
		s.lot = lots[rng.IntN(len(lots))]
	}
	n := uint64(cfg.Symbols)
	if cfg.Total > 2*n {
		g.closeAt = cfg.Total - n + 1
	} else if cfg.Total > n {
		g.closeAt = n + 1
	}
	return g
}

// Seq is the seq of the last message Next produced (0 before the first).
func (g *Generator) Seq() uint64 { return g.seq }

// Symbols is the number of securities (codes 1..Symbols).
func (g *Generator) Symbols() int { return len(g.syms) }

// tickSize is the HKEX-like price spread for a price (3 implied decimals).
func tickSize(p int32) int32 {
	switch {
	case p < 250:
		return 1
	case p < 500:
		return 5
	case p < 10_000:
		return 10
	case p < 20_000:
		return 20
	case p < 100_000:
		return 50
	case p < 200_000:
		return 100
	case p < 500_000:
		return 200
	case p < 1_000_000:
		return 500
	}
	return 1000
}

func roundTick(p int32) int32 {
	t := tickSize(p)
	p -= p % t
	if p < t {
		p = t
	}
	return p
}

// Next overwrites m with the next message; its seq is Seq() afterwards.
// It does not allocate.
func (g *Generator) Next(m *wire.Msg) {
	g.seq++
	*m = wire.Msg{}
	n := uint64(len(g.syms))
	if g.seq <= n {
		g.secDef(m, &g.syms[g.seq-1])
		return
	}
	if g.closeAt != 0 && g.seq >= g.closeAt && g.seq <= g.cfg.Total {
		s := &g.syms[g.seq-g.closeAt]
		m.Type, m.Security, m.Price, m.NumberOfTrades = wire.TypeClosingPrice, s.code, s.price, s.trades
		return
	}
	s := &g.syms[g.rank[g.zipf.Uint64()]]
	m.Security = s.code
	if s.halted {
		s.halted = false
		m.Type, m.Suspension = wire.TypeSecurityStatus, 3
		return
	}
	r := g.rng.IntN(1000)
	switch {
	case r < 340:
		g.addOrder(m, s)
	case r < 480:
		g.modifyOrder(m, s)
	case r < 680:
		g.deleteOrder(m, s)
	case r < 820:
		g.bookUpdate(m, s)
	case r < 920:
		g.trade(m, s)
	case r < 950:
		m.Type, m.Price = wire.TypeNominalPrice, s.price
	case r < 999:
		g.stats(m, s)
	default:
		s.halted = true
		m.Type, m.Suspension = wire.TypeSecurityStatus, 2
	}
}

func (g *Generator) secDef(m *wire.Msg, s *symbol) {
	m.Type, m.Security = wire.TypeSecurityDefinition, s.code
	copy(m.Market[:], "MAIN")
	isin := m.ISIN[:0]
	isin = append(isin, "HK"...)
	for d := uint32(1_000_000_000); d > 0; d /= 10 {
		isin = append(isin, byte('0'+s.code/d%10))
	}
	copy(m.Currency[:], "HKD")
	for i := range m.Name {
		m.Name[i] = ' '
	}
	wire.AppendSymbol(append(m.Name[:0], "SECURITY "...), s.code)
	m.LotSize, m.PrevClose = s.lot, s.prevClose
}

// near returns a price a few ticks from the current one on side's side
// of the book (bids below, offers above).
func (g *Generator) near(s *symbol, side uint16) int32 {
	t := tickSize(s.price)
	off := t * int32(g.rng.IntN(10))
	if side == 0 {
		return max(s.price-off, t)
	}
	return s.price + off
}

func (g *Generator) addOrder(m *wire.Msg, s *symbol) {
	if s.norders == bookCap {
		g.deleteOrder(m, s)
		return
	}
	g.orderID++
	side := uint16(g.rng.IntN(2))
	o := order{id: g.orderID, side: side, price: g.near(s, side), qty: s.lot * uint32(1+g.rng.IntN(20))}
	s.orders[s.norders] = o
	s.norders++
	m.Type, m.OrderID, m.Price, m.Qty, m.Side = wire.TypeAddOrder, o.id, o.price, o.qty, o.side
	m.OrderType = 2 // limit
	m.BookPos = int32(1 + g.rng.IntN(10))
}

func (g *Generator) modifyOrder(m *wire.Msg, s *symbol) {
	if s.norders == 0 {
		g.addOrder(m, s)
		return
	}
	o := &s.orders[g.rng.IntN(s.norders)]
	o.qty = s.lot * uint32(1+g.rng.IntN(20))
	m.Type, m.OrderID, m.Qty, m.Side = wire.TypeModifyOrder, o.id, o.qty, o.side
	m.BookPos = int32(1 + g.rng.IntN(10))
}

func (g *Generator) deleteOrder(m *wire.Msg, s *symbol) {
	if s.norders == 0 {
		g.addOrder(m, s)
		return
	}
	i := g.rng.IntN(s.norders)
	o := s.orders[i]
	s.norders--
	s.orders[i] = s.orders[s.norders]
	m.Type, m.OrderID, m.Side = wire.TypeDeleteOrder, o.id, o.side
}

func (g *Generator) bookUpdate(m *wire.Msg, s *symbol) {
	m.Type = wire.TypeAggregateBook
	n := 1 + g.rng.IntN(4)
	if g.rng.IntN(8) == 0 {
		n += g.rng.IntN(wire.MaxBookEntries - 4)
	}
	m.NumEntries = uint8(n)
	t := tickSize(s.price)
	for i := 0; i < n; i++ {
		side := uint16(g.rng.IntN(2))
		lvl := 1 + g.rng.IntN(10)
		px := s.price - int32(lvl)*t
		if side == 1 {
			px = s.price + int32(lvl)*t
		}
		act := uint8(1)
		switch r := g.rng.IntN(10); {
		case r < 2:
			act = 0
		case r < 3:
			act = 2
		}
		e := &m.Entries[i]
		e.Side, e.Level, e.Action, e.Price = side, uint8(lvl), act, max(px, t)
		if act != 2 {
			e.NumOrders = uint32(1 + g.rng.IntN(30))
			e.AggQty = uint64(s.lot) * uint64(e.NumOrders) * uint64(1+g.rng.IntN(10))
		}
	}
}

func (g *Generator) trade(m *wire.Msg, s *symbol) {
	t := tickSize(s.price)
	s.price = roundTick(max(s.price+t*int32(g.rng.IntN(3)-1), t))
	qty := s.lot * uint32(1+g.rng.IntN(10))
	g.tradeID++
	s.trades++
	s.volume += uint64(qty)
	s.turnover += int64(qty) * int64(s.price) / 1000
	s.high, s.low = max(s.high, s.price), min(s.low, s.price)
	m.Type, m.TradeID, m.Price, m.Qty = wire.TypeTrade, g.tradeID, s.price, qty
	m.TradeTime = uint64(g.cfg.StartTime + int64(g.seq)*g.cfg.TickTime)
}

func (g *Generator) stats(m *wire.Msg, s *symbol) {
	m.Type = wire.TypeStatistics
	m.SharesTraded, m.Turnover = s.volume, s.turnover
	m.High, m.Low, m.Last = s.high, s.low, s.price
	if s.volume > 0 {
		m.VWAP = int32(s.turnover * 1000 / int64(s.volume))
	}
	m.ShortShares = uint32(s.volume / 20)
	m.ShortTurnover = s.turnover / 20
}
