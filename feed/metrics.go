package feed

import (
	"github.com/prometheus/client_golang/prometheus"

	"tickrelay/internal/promreg"
)

// metrics are the exchange's Prometheus series, registered on
// Config.Registerer for the duration of Run (kept unregistered when nil).
type metrics struct {
	group      *promreg.Group
	sessions   prometheus.Gauge
	bytes      prometheus.Counter
	frames     prometheus.Counter
	heartbeats prometheus.Counter
	logons     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, s *Server) (*metrics, error) {
	m := &metrics{
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tickrelay_exchange_sessions", Help: "Logged-on feed sessions."}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tickrelay_exchange_sent_bytes_total", Help: "Bytes written to feed sessions (frames and heartbeats)."}),
		frames: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tickrelay_exchange_sent_frames_total", Help: "Data frames written to feed sessions (retransmitted or live)."}),
		heartbeats: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tickrelay_exchange_heartbeats_total", Help: "Heartbeats written to idle sessions."}),
		logons: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tickrelay_exchange_logons_total", Help: "Logon attempts by outcome (ok, bad_auth, unavailable, malformed, timeout)."},
			[]string{"status"}),
	}
	cs := []prometheus.Collector{m.sessions, m.bytes, m.frames, m.heartbeats, m.logons,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tickrelay_exchange_published_seq", Help: "Highest seq generated."},
			func() float64 { return float64(s.Published()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tickrelay_exchange_oldest_seq", Help: "Lowest seq held for retransmission."},
			func() float64 { return float64(s.Oldest()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tickrelay_exchange_history_bytes", Help: "Bytes of frames held for retransmission."},
			func() float64 { return float64(s.hist.bytes.Load()) }),
	}
	var err error
	if m.group, err = promreg.Register(reg, cs...); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *metrics) unregister() { m.group.Unregister() }
