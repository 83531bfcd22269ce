package perf

import (
	"context"
	"fmt"
)

// README markers of the fan-out step's table.
const (
	FanoutBegin = "<!-- perf-fanout:begin -->"
	FanoutEnd   = "<!-- perf-fanout:end -->"
)

// RunFanout is the sweep's comparison again with each client on subs
// symbols (each item then goes to Clients*subs/Symbols clients: 25 with
// 5,000 x 10 of 2,000) at rates, every system, results in
// Out/fanout.json and the README between the fan-out markers.
func RunFanout(ctx context.Context, cfg Config, subs int, rates []int) (*Results, error) {
	if subs < 1 || len(rates) == 0 {
		return nil, fmt.Errorf("perf: fan-out step: %d symbols per client at rates %v", subs, rates)
	}
	c := cfg
	c.SubsPerClient, c.Rates, c.SweepWarmUp = subs, rates, 0
	c.Out, c.UpdateReadme = "", ""
	res, err := Run(ctx, c)
	if res == nil {
		return nil, err
	}
	if err != nil {
		return res, err
	}
	return res, saveStep(cfg, "fanout.json", res, FanoutBegin, FanoutEnd, RatioTable(res))
}
