package backup

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"tickrelay/internal/promreg"
)

// metrics are the backup's Prometheus series, registered on
// Config.Registerer (none when it is nil).
type metrics struct {
	group        *promreg.Group
	once         sync.Once
	items        prometheus.Counter
	rounds       prometheus.Counter
	failures     prometheus.Counter
	lastSuccess  prometheus.Gauge
	roundSeconds prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, src Source) (*metrics, error) {
	m := &metrics{
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
	cs := []prometheus.Collector{m.items, m.rounds, m.failures, m.lastSuccess, m.roundSeconds,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tickrelay_backup_backlog_items", Help: "Items in the journal not yet backed up (LastSeq - BackedUp)."},
			func() float64 { return float64(backlog(src)) }),
	}
	var err error
	if m.group, err = promreg.Register(reg, cs...); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *metrics) unregister() {
	m.once.Do(m.group.Unregister)
}
