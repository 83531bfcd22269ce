package root

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the root's Prometheus metrics.
type Metrics struct {
	ItemsReceived prometheus.Counter
	Duplicates    prometheus.Counter
	SeqBackwards  prometheus.Counter // times the exchange's seq went back to one already held
	Gaps          prometheus.Counter
	Reconnects    prometheus.Counter
	BadInput      *prometheus.CounterVec // label kind: empty, too_large, truncated, unknown_type, stamps, closed_mid_frame, session
	SessionUp     prometheus.Gauge
	StoreErrors   prometheus.Counter
	Children      prometheus.Gauge
	BytesSent     prometheus.Counter
	Batches       prometheus.Counter
	ChildErrors   *prometheus.CounterVec // label code: seq_gone, seq_future, bad_frame, shutdown
	RingHead      prometheus.Gauge
	RingFirst     prometheus.Gauge
	Epoch         prometheus.Gauge // the exchange's current epoch
	// The child directory: its epoch, the children in it, announcements refused.
	DirectoryEpoch    prometheus.Gauge
	DirectoryChildren prometheus.Gauge
	BadAnnounces      prometheus.Counter
	EpochChanges      prometheus.Counter // epochs the exchange started (a new day, a Sequence Reset)
	// The control stream (control.go): records sequenced, ops refused.
	Controls       prometheus.Counter
	ControlRefused prometheus.Counter
	ControlSerial  prometheus.Gauge
	GroupHeld      prometheus.Gauge // queue-group places held for a member that left (-group-linger)
	// The alert engine (alerts.go).
	AlertsStanding prometheus.Gauge
	AlertFires     prometheus.Counter
	AlertMatch     prometheus.Histogram
	AlertOwners    *prometheus.GaugeVec // the top holders, by rank and identity
}

func newMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		ItemsReceived:     prometheus.NewCounter(prometheus.CounterOpts{Name: "tickrelay_root_items_received_total", Help: "Feed items accepted from the exchange."}),
		Duplicates:        prometheus.NewCounter(prometheus.CounterOpts{Name: "tickrelay_root_duplicates_total", Help: "Feed items ignored because their seq was already held."}),
		SeqBackwards:      prometheus.NewCounter(prometheus.CounterOpts{Name: "tickrelay_root_seq_backwards_total", Help: "Times the exchange's seq went back to a seq already held (its items are then ignored as duplicates)."}),
		Gaps:              prometheus.NewCounter(prometheus.CounterOpts{Name: "tickrelay_root_gaps_total", Help: "Sequence gaps seen on the exchange session (each drops the session)."}),
		Reconnects:        prometheus.NewCounter(prometheus.CounterOpts{Name: "tickrelay_root_reconnects_total", Help: "Exchange session (re)connect attempts after the first."}),
		BadInput:          prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tickrelay_root_bad_input_total", Help: "Malformed input from the exchange, by kind (each drops the session)."}, []string{"kind"}),
		SessionUp:         prometheus.NewGauge(prometheus.GaugeOpts{Name: "tickrelay_root_session_up", Help: "1 while logged in to the exchange."}),
		StoreErrors:       prometheus.NewCounter(prometheus.CounterOpts{Name: "tickrelay_root_store_errors_total", Help: "Failed appends to the durable store."}),
		Children:          prometheus.NewGauge(prometheus.GaugeOpts{Name: "tickrelay_root_children", Help: "Connected child relay sessions."}),
		BytesSent:         prometheus.NewCounter(prometheus.CounterOpts{Name: "tickrelay_root_bytes_sent_total", Help: "Relay bytes written to children."}),
		Batches:           prometheus.NewCounter(prometheus.CounterOpts{Name: "tickrelay_root_batches_sent_total", Help: "Relay batches written to children."}),
		ChildErrors:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tickrelay_root_child_errors_total", Help: "Error frames sent to children, by code."}, []string{"code"}),
		RingHead:          prometheus.NewGauge(prometheus.GaugeOpts{Name: "tickrelay_root_ring_head", Help: "Newest seq in the ring (of the current epoch)."}),
		RingFirst:         prometheus.NewGauge(prometheus.GaugeOpts{Name: "tickrelay_root_ring_first", Help: "Oldest seq in the ring (of the current epoch)."}),
		Epoch:             prometheus.NewGauge(prometheus.GaugeOpts{Name: "tickrelay_root_epoch", Help: "The exchange's current epoch (session id)."}),
		EpochChanges:      prometheus.NewCounter(prometheus.CounterOpts{Name: "tickrelay_root_epoch_changes_total", Help: "New epochs the exchange started (a new trading day, a Sequence Reset)."}),
		DirectoryEpoch:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "tickrelay_root_directory_epoch", Help: "Epoch of the child directory last sent to the children."}),
		DirectoryChildren: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tickrelay_root_directory_children", Help: "Children in the directory last sent."}),
		BadAnnounces:      prometheus.NewCounter(prometheus.CounterOpts{Name: "tickrelay_root_bad_announcements_total", Help: "Child announcements refused (malformed, or a name or address another child holds); logged once per connection."}),
		Controls:          prometheus.NewCounter(prometheus.CounterOpts{Name: "tickrelay_root_controls_total", Help: "Control records sequenced into the relay stream (group joins and leaves)."}),
		ControlRefused:    prometheus.NewCounter(prometheus.CounterOpts{Name: "tickrelay_root_control_refused_total", Help: "Control ops from children refused (malformed, or another child's member)."}),
		ControlSerial:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "tickrelay_root_control_serial", Help: "Serial of the last control record."}),
		AlertsStanding:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "tickrelay_root_alerts_standing", Help: "Standing alerts in the engine."}),
		GroupHeld:         prometheus.NewGauge(prometheus.GaugeOpts{Name: "tickrelay_root_group_members_held", Help: "Queue-group members whose connection ended and whose place is held for them (-group-linger)."}),
		AlertFires:        prometheus.NewCounter(prometheus.CounterOpts{Name: "tickrelay_root_alert_fires_total", Help: "Alerts fired (rate: fires per second)."}),
		AlertMatch: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tickrelay_root_alert_match_seconds", Help: "Time to match one update against the standing alerts and sequence its fires (one update in 16).",
			Buckets: prometheus.ExponentialBuckets(50e-9, 2, 16)}),
		AlertOwners: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tickrelay_root_alerts_by_identity", Help: "Standing alerts of the identities holding the most (rank 1 the most)."}, []string{"rank", "identity"}),
	}
	if reg != nil {
		reg.MustRegister(m.ItemsReceived, m.Duplicates, m.SeqBackwards, m.Gaps, m.Reconnects, m.BadInput, m.SessionUp,
			m.StoreErrors, m.Children, m.BytesSent, m.Batches, m.ChildErrors, m.RingHead, m.RingFirst, m.Epoch, m.EpochChanges, m.DirectoryEpoch, m.DirectoryChildren, m.BadAnnounces,
			m.Controls, m.ControlRefused, m.ControlSerial, m.AlertsStanding, m.GroupHeld, m.AlertFires, m.AlertMatch, m.AlertOwners)
	}
	return m
}
