package session

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the counters a Loop moves (the child registers them).
type Metrics struct {
	SlowDisconnect prometheus.Counter
	SlowConflated  prometheus.Counter
	SlowResynced   prometheus.Counter
	Behind         prometheus.Gauge       // clients owed frames, catching up from the history
	ClientErrors   *prometheus.CounterVec // by code
	BytesOut       prometheus.Counter
	FramesOut      prometheus.Counter
	Writes         prometheus.Counter
	ResumeArrivals prometheus.Counter // clients whose first subscription was a RESUME (moved here from another child)
}
