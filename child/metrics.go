package child

import (
	"github.com/prometheus/client_golang/prometheus"

	"tickrelay/child/session"
)

// Metrics are the child's Prometheus metrics, registered on Config.Registerer.
type Metrics struct {
	Items      prometheus.Counter // relay items parsed
	BadItems   prometheus.Counter // items whose body did not decode
	Duplicates prometheus.Counter // relay items dropped as already applied (the other root's copy, or a resend)
	Gaps       prometheus.Counter // gaps in the relay stream (each forces a reconnect)
	LostItems  prometheus.Counter // seqs skipped because the root no longer held them
	Reconnects prometheus.Counter // relay sessions started after each line's first
	LastSeq    prometheus.Gauge
	RootHead   prometheus.Gauge // head seq from the root's last heartbeat
	Epoch      prometheus.Gauge // the exchange epoch of the items applied
	// The child directory: the epoch of the set as clients see it, and its size.
	DirectoryEpoch    prometheus.Gauge
	DirectoryChildren prometheus.Gauge
	EpochChanges      prometheus.Counter
	Clients           prometheus.Gauge
	Drains            prometheus.Counter // lame-duck drains started
	ResumeArrivals    prometheus.Counter // clients whose first subscription was a RESUME
	// Admission and entitlements.
	Refused            *prometheus.CounterVec // connections refused ERR BUSY, by reason
	Throttled          prometheus.Counter
	Shed               prometheus.Counter
	Denied             prometheus.Counter
	Authenticated      prometheus.Gauge
	EntitlementReloads *prometheus.CounterVec // by result (ok, error)
	EntitlementTokens  prometheus.Gauge
	// The control stream (control.go).
	ControlApplied prometheus.Counter
	ControlLate    prometheus.Counter
	ControlErrors  prometheus.Counter
	ControlSerial  prometheus.Gauge
	// Queue groups, by group.
	GroupOut       *prometheus.CounterVec
	GroupLost      *prometheus.CounterVec
	GroupRedeliver *prometheus.CounterVec
	GroupMembers   *prometheus.GaugeVec
	// Alerts: the replica's standing alerts, FIRED lines sent here.
	AlertsStanding prometheus.Gauge
	AlertsFired    prometheus.Counter
	SlowDisconnect prometheus.Counter
	SlowConflated  prometheus.Counter     // clients gone stale under SlowPolicy conflate
	SlowResynced   prometheus.Counter     // stale clients caught up with images
	ClientsBehind  prometheus.Gauge       // clients owed frames, to catch up from the history
	ClientErrors   *prometheus.CounterVec // ERR codes sent, by code
	BytesOut       prometheus.Counter     // bytes written to clients
	FramesOut      prometheus.Counter     // frames written to clients (fan-out copies)
	Writes         prometheus.Counter     // client writes of frames (frames/writes = coalescing)
	WriteSubmits   prometheus.Counter     // io_uring submissions carrying client writes (-writes uring)
	ClockOffset    prometheus.Gauge       // root clock minus child clock, seconds
	ClockBound     prometheus.Gauge       // error bound of ClockOffset (RTT/2), seconds
	// Per root (label root = its address): whether its line streams, and
	// the items taken from it (the first copy of each seq).
	RootUp     *prometheus.GaugeVec
	WritePath  *prometheus.GaugeVec // 1 for the client write path in use (syscall or uring)
	RootItems  *prometheus.CounterVec
	RootErrors *prometheus.CounterVec // Error frames from this root, by code (wire.RelayCodeName)
}

func newMetrics(reg prometheus.Registerer, name string) *Metrics {
	labels := prometheus.Labels{"child": name}
	c := func(n, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "tickrelay", Subsystem: "child", Name: n, Help: help, ConstLabels: labels})
	}
	cv := func(n, help, label string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tickrelay", Subsystem: "child", Name: n, Help: help, ConstLabels: labels}, []string{label})
	}
	g := func(n, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "tickrelay", Subsystem: "child", Name: n, Help: help, ConstLabels: labels})
	}
	m := &Metrics{
		Items:             c("items_total", "Relay items parsed into text frames."),
		BadItems:          c("bad_items_total", "Relay items whose body did not decode."),
		Duplicates:        c("duplicate_items_total", "Relay items dropped as already applied (with A/B roots, the later copy of each seq)."),
		Gaps:              c("gaps_total", "Gaps detected in the relay stream."),
		LostItems:         c("lost_items_total", "Seqs skipped because the root no longer held them."),
		Reconnects:        c("reconnects_total", "Relay sessions started after the first."),
		LastSeq:           g("last_seq", "Last seq received from the root."),
		RootHead:          g("root_head_seq", "Head seq announced by the root's last heartbeat."),
		Epoch:             g("epoch", "The exchange epoch (session id) of the items applied."),
		DirectoryEpoch:    g("directory_epoch", "Epoch of the child directory (CHILDREN): grows with each change of the set."),
		DirectoryChildren: g("directory_children", "Children in the directory (the union of the roots' views)."),
		EpochChanges:      c("epoch_changes_total", "New epochs started after the child's first (each tells every client RESET)."),
		Clients:           g("clients", "Connected clients."),
		Drains:            c("drains_total", "Lame-duck drains started (SIGTERM with -drain-grace, or POST /drain)."),
		ResumeArrivals:    c("resume_arrivals_total", "Clients whose first subscription was a RESUME: moved here from another child."),
		Refused: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tickrelay", Subsystem: "child",
			Name: "refused_total", Help: "Connections refused with ERR BUSY, by reason (max_clients, max_clients_per_ip, accept_rate, draining).", ConstLabels: labels}, []string{"reason"}),
		Throttled:     c("throttled_commands_total", "Command lines refused ERR BUSY by the per-client command rate."),
		Shed:          c("shed_commands_total", "SUB and RESUME lines refused ERR BUSY while their event loop's fan-out was over the shed backlog."),
		Denied:        c("denied_total", "Symbols refused ERR DENIED (not in the token's grant, or revoked by a reload)."),
		Authenticated: g("authenticated_clients", "Clients past AUTH."),
		EntitlementReloads: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tickrelay", Subsystem: "child",
			Name: "entitlement_reloads_total", Help: "Entitlements file reloads, by result (ok; error: the table in force stayed).", ConstLabels: labels}, []string{"result"}),
		EntitlementTokens: g("entitlement_tokens", "Tokens in the entitlements table in force."),
		ControlApplied:    c("controls_applied_total", "Control records applied (group joins and leaves), each between the same two items on every child."),
		ControlLate:       c("control_late_total", "Control records that came after items past their place (root B ran ahead of the sequencing root A); applied at once."),
		ControlErrors:     c("control_errors_total", "Control frames that did not decode or did not follow (the relay session restarts and resyncs)."),
		ControlSerial:     g("control_serial", "Serial of the last control record applied."),
		GroupOut:          cv("group_deliveries_total", "Items handed to queue-group members here (each item of a group's symbols goes to one member across the children).", "group"),
		GroupRedeliver:    cv("group_redelivered_total", "Items an ack member of a queue group left unacknowledged, sent again (REDELIVER) to their new owners here.", "group"),
		GroupLost:         cv("group_lost_total", "Items a queue group gave to members that had left this child before their leave took effect (without ack, at most once).", "group"),
		GroupMembers: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "tickrelay", Subsystem: "child", Name: "group_members",
			Help: "Queue-group members on this child whose join took effect.", ConstLabels: labels}, []string{"group"}),
		AlertsStanding: g("alerts_standing", "Standing alerts in this child's replica (every child holds every alert)."),
		AlertsFired:    c("alert_fired_lines_total", "FIRED lines sent to clients here."),
		SlowDisconnect: c("slow_disconnects_total", "Clients disconnected for too many unsent bytes (or, conflated, still behind after the slow timeout)."),
		SlowConflated:  c("slow_conflated_total", "Clients that passed the unsent-bytes limit and stopped getting frames until a resync (slow policy conflate)."),
		SlowResynced:   c("slow_resynced_total", "Conflated clients caught up with each symbol's image and OK SUB."),
		ClientsBehind:  g("clients_behind", "Clients whose sockets stopped taking bytes: owed frames, caught up from the history once they drain."),
		ClientErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tickrelay", Subsystem: "child",
			Name: "client_errors_total", Help: "ERR lines sent to clients, by code.", ConstLabels: labels}, []string{"code"}),
		BytesOut:     c("bytes_out_total", "Bytes written to clients."),
		FramesOut:    c("frames_out_total", "Frames written to clients (one per subscriber)."),
		Writes:       c("writes_total", "Writes of frames to clients (frames_out_total / writes_total is the frames per write)."),
		WriteSubmits: c("write_submits_total", "io_uring submissions carrying client writes (-writes uring; writes_total / write_submits_total is the writes per system call)."),
		ClockOffset:  g("clock_offset_seconds", "Estimated root clock minus child clock."),
		ClockBound:   g("clock_offset_bound_seconds", "Error bound of the clock offset (RTT/2)."),
		WritePath: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "tickrelay", Subsystem: "child",
			Name: "write_path", Help: "1 for the path the loops write clients with (-writes: syscall, or uring where io_uring was allowed).", ConstLabels: labels}, []string{"path"}),
		RootUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "tickrelay", Subsystem: "child",
			Name: "root_up", Help: "1 while the relay line to this root streams (batches or heartbeats), else 0.", ConstLabels: labels}, []string{"root"}),
		RootItems: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tickrelay", Subsystem: "child",
			Name: "root_items_total", Help: "Items taken from this root: the first copy of each seq (with an A/B pair, the faster root's share).", ConstLabels: labels}, []string{"root"}),
		RootErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tickrelay", Subsystem: "child",
			Name: "root_errors_total", Help: "Error frames from this root, by code (seq_gone, seq_future, shutdown, ...).", ConstLabels: labels}, []string{"root", "code"}),
	}
	if reg != nil {
		reg.MustRegister(m.Items, m.BadItems, m.Duplicates, m.Gaps, m.LostItems, m.Reconnects, m.LastSeq,
			m.RootHead, m.Epoch, m.EpochChanges, m.DirectoryEpoch, m.DirectoryChildren, m.Clients, m.Drains, m.ResumeArrivals, m.Refused, m.Throttled, m.Shed, m.Denied, m.Authenticated, m.EntitlementReloads, m.EntitlementTokens, m.ControlApplied, m.ControlLate, m.ControlErrors, m.ControlSerial, m.GroupOut, m.GroupLost, m.GroupRedeliver, m.GroupMembers, m.AlertsStanding, m.AlertsFired, m.SlowDisconnect, m.SlowConflated, m.SlowResynced, m.ClientsBehind, m.ClientErrors, m.BytesOut, m.FramesOut, m.Writes, m.WriteSubmits, m.ClockOffset, m.ClockBound, m.WritePath, m.RootUp, m.RootItems, m.RootErrors)
	}
	return m
}

// session is the share of m the loops' session cores move.
func (m *Metrics) session() *session.Metrics {
	return &session.Metrics{SlowDisconnect: m.SlowDisconnect, SlowConflated: m.SlowConflated, SlowResynced: m.SlowResynced,
		Behind: m.ClientsBehind, ClientErrors: m.ClientErrors, BytesOut: m.BytesOut, FramesOut: m.FramesOut, Writes: m.Writes, ResumeArrivals: m.ResumeArrivals,
		Throttled: m.Throttled, Shed: m.Shed, Denied: m.Denied, Authenticated: m.Authenticated,
		GroupOut: m.GroupOut, GroupLost: m.GroupLost, GroupRedelivered: m.GroupRedeliver, GroupMembers: m.GroupMembers, AlertsFired: m.AlertsFired}
}
