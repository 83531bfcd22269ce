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
	Throttled      prometheus.Counter // command lines refused ERR BUSY by the per-client rate
	Shed           prometheus.Counter // SUB/RESUME lines refused ERR BUSY while the loop was overloaded
	Denied         prometheus.Counter // symbols refused ERR DENIED (at SUB/RESUME, or revoked by a reload)
	Authenticated  prometheus.Gauge   // clients past AUTH
	// Queue groups, by label group: items handed to members, items given
	// to members gone from here (at-most-once), items an ack member left
	// unacknowledged sent again to their new owners, members here.
	GroupOut         *prometheus.CounterVec
	GroupLost        *prometheus.CounterVec
	GroupRedelivered *prometheus.CounterVec
	GroupMembers     *prometheus.GaugeVec
	AlertsFired      prometheus.Counter // FIRED lines sent (nil: not counted)
}
