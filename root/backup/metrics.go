package backup

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the backup's Prometheus series, registered on
// Config.Registerer (none when it is nil).
type metrics struct {
	reg          prometheus.Registerer
	cs           []prometheus.Collector
	once         sync.Once
	items        prometheus.Counter
	rounds       prometheus.Counter
	failures     prometheus.Counter
	lastSuccess  prometheus.Gauge
	roundSeconds prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, src Source) (*metrics, error) {
	m := &metrics{
		reg: reg,
		items: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tickrelay_backup_items_total", Help: "Items copied to PostgreSQL (re-sent ones included)."}),
		rounds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tickrelay_backup_rounds_total", Help: "Backup rounds that completed."}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tickrelay_backup_failures_total", Help: "Backup rounds that failed."}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tickrelay_backup_last_success_unixtime", Help: "Unix time of the last completed round."}),
		roundSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tickrelay_backup_round_seconds", Help: "Duration of completed backup rounds.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 18)}),
	}
	m.cs = []prometheus.Collector{m.items, m.rounds, m.failures, m.lastSuccess, m.roundSeconds,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tickrelay_backup_backlog_items", Help: "Items in the journal not yet backed up (LastSeq - BackedUp)."},
			func() float64 { return float64(backlog(src)) }),
	}
	if reg == nil {
		return m, nil
	}
	for i, c := range m.cs {
		if err := reg.Register(c); err != nil {
			for _, done := range m.cs[:i] {
				reg.Unregister(done)
			}
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) unregister() {
	m.once.Do(func() {
		if m.reg == nil {
			return
		}
		for _, c := range m.cs {
			m.reg.Unregister(c)
		}
	})
}
