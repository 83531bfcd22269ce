package perf

import (
	"bytes"
	"fmt"
	"os"
	"strings"

	"tickrelay/latency"
)

// README markers between which UpdateReadme writes the ratio table.
const (
	ReadmeBegin = "<!-- perf:begin -->"
	ReadmeEnd   = "<!-- perf:end -->"
)

// RatioTable renders the sweep as Markdown: per rate and peer, tickrelay's
// end-to-end percentiles, CPU per delivery and memory per client divided by
// the peer's (below 1 means tickrelay is better), followed by the absolute
// numbers of every step.
func RatioTable(res *Results) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Measured %s on %d CPUs (%s): ratios are tickrelay / peer, lower is better for tickrelay.\n\n",
		res.Started.Format("2006-01-02"), res.NumCPU, res.GoVersion)
	if res.Command != "" {
		fmt.Fprintf(&b, "Command: `%s`", res.Command)
		if res.Setup != "" {
			fmt.Fprintf(&b, " (%s)", res.Setup)
		}
		b.WriteString(".\n\n")
	}
	rates := columns(res)
	var ratioRows []string
	for _, rt := range rates {
		ours, ok := findStep(res, SystemTickrelay, rt)
		if !ok {
			continue
		}
		for _, peer := range []string{SystemNATS, SystemRedis} {
			p, ok := findStep(res, peer, rt)
			if !ok {
				continue
			}
			o, q := ours.Latency.Hops[latency.HopEndToEnd], p.Latency.Hops[latency.HopEndToEnd]
			label := rateLabel(rt)
			if rt == 0 {
				label = fmt.Sprintf("max (%s vs %s)", rateLabel(ours.Rate), rateLabel(p.Rate))
			}
			ratioRows = append(ratioRows, fmt.Sprintf("| %s | %s | %s | %s | %s | %s | %s | %s | %s |",
				label, peer, ratio(ours.DeliveryRate, p.DeliveryRate),
				ratio(float64(o.P50), float64(q.P50)), ratio(float64(o.P99), float64(q.P99)),
				ratio(float64(o.P999), float64(q.P999)), ratio(float64(o.Max), float64(q.Max)),
				ratio(ours.CPUPerDeliveryNs, p.CPUPerDeliveryNs), ratio(ours.RSSPerClient, p.RSSPerClient)))
		}
	}
	if len(ratioRows) > 0 {
		b.WriteString("| rate | peer | deliveries/s (higher is better) | p50 | p99 | p99.9 | max | CPU/delivery | memory/client |\n")
		b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
		for _, r := range ratioRows {
			b.WriteString(r + "\n")
		}
		b.WriteString("\n")
	}
	b.WriteString("| system | rate | achieved msgs/s | deliveries/s | delivered/expected | e2e p50 µs | p99 µs | p99.9 µs | max µs | CPU ns/delivery | RSS B/client |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, st := range res.Steps {
		if _, ok := st.column(); !ok {
			continue // max-search probes: in results.json
		}
		label := st.RateLabel()
		if st.Max && st.Rate > 0 {
			label = "max: " + label
		}
		if st.Err != "" {
			fmt.Fprintf(&b, "| %s | %s | error: %s | | | | | | | | |\n", st.System, label, oneLine(st.Err))
			continue
		}
		e := st.Latency.Hops[latency.HopEndToEnd]
		exp := "n/a"
		if st.Expected > 0 {
			exp = fmt.Sprintf("%.4f", float64(st.Delivered)/float64(st.Expected))
		}
		fmt.Fprintf(&b, "| %s | %s | %.0f | %.0f | %s | %s | %s | %s | %s | %.0f | %.0f |\n", st.System, label,
			st.AchievedRate, st.DeliveryRate, exp, latency.Micros(e.P50), latency.Micros(e.P99), latency.Micros(e.P999), latency.Micros(e.Max),
			st.CPUPerDeliveryNs, st.RSSPerClient)
	}
	b.WriteString("\nServers, load clients and the feed share one host, so every number includes their contention " +
		"(and whatever else runs on it). Latency runs from each message's place in the publishing schedule " +
		"(within one 1 ms tick): the exchange simulator keeps to the rate whatever tickrelay does, and the peers' " +
		"publisher, when a server holds it back through TCP (achieved msgs/s below the rate), stamps a late " +
		"message with the time it was due, so a backlog counts as latency for every system (no coordinated omission). " +
		"The max rows compare each system at its own highest sustained rate.\n")
	for _, n := range res.Notes {
		fmt.Fprintf(&b, "\nNote: %s\n", n)
	}
	return b.String()
}

func ratio(a, b float64) string {
	if a <= 0 || b <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	s = strings.ReplaceAll(s, "|", "/")
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return s
}

// UpdateReadme replaces what lies between ReadmeBegin and ReadmeEnd in the
// file at path with table.
func UpdateReadme(path, table string) error {
	return updateReadmeBetween(path, ReadmeBegin, ReadmeEnd, table)
}

// updateReadmeBetween replaces what lies between begin and end in the file
// at path with table.
func updateReadmeBetween(path, begin, end, table string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	out, err := replaceBetween(data, begin, end, table)
	if err != nil {
		return fmt.Errorf("perf: %s: %w", path, err)
	}
	return os.WriteFile(path, out, 0o644)
}

func replaceBetween(data []byte, begin, end, table string) ([]byte, error) {
	i := bytes.Index(data, []byte(begin))
	j := bytes.Index(data, []byte(end))
	if i < 0 || j < i {
		return nil, fmt.Errorf("markers %s ... %s not found in order", begin, end)
	}
	var b bytes.Buffer
	b.Write(data[:i+len(begin)])
	b.WriteString("\n")
	b.WriteString(strings.TrimRight(table, "\n"))
	b.WriteString("\n")
	b.Write(data[j:])
	return b.Bytes(), nil
}
