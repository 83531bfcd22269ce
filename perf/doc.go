// Package perf measures tickrelay against its peers.
//
//   - the hop histograms are package latency's (the daemons record them too).
//   - harness (perf/harness): the lean load client, the same for every system.
//   - Publisher (publish.go): the feed as text frames onto NATS subjects or
//     Redis channels "t.<symbol>" at a target rate.
//   - Run (run.go): the `tickrelay perf` sweep, then results.json,
//     latency.png (plot.go, stdlib only, font.go) and the README ratio table
//     (readme.go).
//
// # Processes of a sweep step
//
// Servers never share a process with the load:
//
//	peers:     tickrelay-natspeer -addr 127.0.0.1:0         (prints "ready ADDR")
//	           redis-server --bind 127.0.0.1 ...            (when on PATH)
//	tickrelay: tickrelay root / child / exchange            (ports 9100/9200/9000)
//	driver:    this process: publisher (peers only) and harness
//
// A tickrelay step starts the root (temp journal) and the children, lets
// the harness subscribe, and only then starts the exchange with
// -start-on-logon -max-seq M (M = rate * Duration): the root, retrying
// meanwhile, logs on and the exchange publishes exactly seqs 1..M. Expected deliveries are counted by
// replaying the same deterministic stream (feed.Generator) here; publishing
// ends when the root's ring head (admin /metrics) reaches M. The daemons'
// admin ports serve /debug/pprof/ too: -profile-dir saves CPU profiles of
// the root and children over each step.
//
// The first Warmup of each step is delivered and counted but kept out of
// the histograms (latency.Recorder.SetWarmup): fresh processes fault in buffers and
// grow their queues then, which is not the steady state.
//
// Each fixed rate runs Repeats times per system, the systems taking turns;
// the run with the median end-to-end p99 stands for it (the others are in
// results.json as spares).
//
// "max" is not an unthrottled step: after the fixed rates, each system gets
// up to MaxTries more rates searching its highest sustained rate (all
// published within 5% of the rate, every frame delivered, end-to-end p99
// within SustainP99): 1.5x the best sustained rate while nothing failed,
// then the midpoint of the best sustained and the lowest failed. Each rate
// runs until most of Repeats runs agree (probeRate), so one lucky run does
// not set a max. The tables compare each system at its own max.
//
// Publish rate is over [first message, publisher done]; delivery rate over
// [first message, last delivery]. A drain that stalls for 2 s ends the step
// (delivered < expected shows it).
//
// Server CPU (utime+stime from /proc/PID/stat) is taken from after the
// clients subscribed to after the drain, and divided by frames delivered;
// memory per client is the servers' RSS growth while the clients connected
// and subscribed, divided by the client count. For tickrelay the exchange
// is the load source (as the publisher is for peers) and is not counted.
package perf
