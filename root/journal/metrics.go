package journal

import (
	"github.com/prometheus/client_golang/prometheus"

	"tickrelay/internal/promreg"
	"tickrelay/wire"
)

// metrics are the journal's Prometheus series, registered on the
// Registerer from Options (none when it is nil).
type metrics struct {
	group         *promreg.Group
	commits       prometheus.Counter
	commitErrors  prometheus.Counter
	deleted       prometheus.Counter
	commitSeconds prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, j *Journal) (*metrics, error) {
	m := &metrics{
		commits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tickrelay_journal_commits_total", Help: "Group commits written."}),
		commitErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tickrelay_journal_commit_errors_total", Help: "Group commits that failed (and were retried)."}),
		deleted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tickrelay_journal_retention_deleted_items_total", Help: "Items deleted by retention."}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tickrelay_journal_commit_seconds", Help: "Latency of one group commit (write and fsync).",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16)}),
	}
	cs := []prometheus.Collector{m.commits, m.commitErrors, m.deleted, m.commitSeconds,
		// Append counts under the journal's mutex, which it holds anyway;
		// the scrape reads the counts there rather than Append paying for
		// two more atomic updates per item.
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tickrelay_journal_appended_items_total", Help: "Items appended to the journal."},
			func() float64 { return float64(j.Stats().Appended) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tickrelay_journal_appended_bytes_total", Help: "Bytes of relay items appended to the journal."},
			func() float64 { j.mu.Lock(); defer j.mu.Unlock(); return float64(j.appendedBytes) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tickrelay_journal_last_seq", Help: "Highest seq appended (of tickrelay_journal_epoch)."},
			func() float64 { return float64(wire.PosSeq(j.LastSeq())) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tickrelay_journal_epoch", Help: "Epoch of the highest seq appended."},
			func() float64 { return float64(wire.PosEpoch(j.LastSeq())) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tickrelay_journal_durable_seq", Help: "Highest seq committed to the file (of its epoch)."},
			func() float64 { return float64(wire.PosSeq(j.DurableSeq())) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tickrelay_journal_stored_bytes", Help: "Bytes of items held in the file."},
			func() float64 { return float64(j.Stats().StoredBytes) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tickrelay_journal_unbacked_items", Help: "Items appended but not yet backed up (LastSeq - BackedUp)."},
			func() float64 { return float64(backlog(j.LastSeq(), j.BackedUp())) }),
	}
	var err error
	if m.group, err = promreg.Register(reg, cs...); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *metrics) unregister() { m.group.Unregister() }

func backlog(last, backedUp uint64) uint64 { return wire.PosItems(backedUp, last) }
