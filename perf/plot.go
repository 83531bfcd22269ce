package perf

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"

	"tickrelay/latency"
)

// Plot layout: one panel per hop in a 2x2 grid; x = rate step, y = latency
// (µs, log scale); one line per system and percentile.
const (
	plotW, plotH = 1200, 860
	legendH      = 60
	panelPad     = 16
	axisL, axisB = 70, 40
	axisT, axisR = 26, 12
)

var (
	colBG    = color.RGBA{255, 255, 255, 255}
	colAxis  = color.RGBA{40, 40, 40, 255}
	colGrid  = color.RGBA{225, 225, 225, 255}
	colText  = color.RGBA{20, 20, 20, 255}
	sysColor = map[string][3]color.RGBA{ // p50, p99, p99.9
		SystemTickrelay: {{120, 170, 240, 255}, {40, 100, 210, 255}, {10, 40, 120, 255}},
		SystemNATS:      {{130, 210, 130, 255}, {40, 160, 60, 255}, {10, 90, 30, 255}},
		SystemRedis:     {{245, 150, 140, 255}, {215, 60, 50, 255}, {130, 20, 20, 255}},
	}
	pctNames = [3]string{"p50", "p99", "p99.9"}
)

func pctValue(s latency.HopStats, k int) int64 {
	switch k {
	case 0:
		return s.P50
	case 1:
		return s.P99
	}
	return s.P999
}

// WritePlot renders res as a PNG: latency percentiles per hop and rate.
func WritePlot(w io.Writer, res *Results) error {
	img := image.NewRGBA(image.Rect(0, 0, plotW, plotH))
	draw.Draw(img, img.Bounds(), &image.Uniform{colBG}, image.Point{}, draw.Src)

	// Distinct rates and systems in sweep order.
	rates := columns(res)
	var systems []string
	seenS := map[string]bool{}
	for _, st := range res.Steps {
		if !seenS[st.System] {
			seenS[st.System] = true
			systems = append(systems, st.System)
		}
	}

	// Legend.
	x := panelPad
	drawText(img, x, 8, "tickrelay perf: latency (us, log) by target rate", colText, 2)
	y := 34
	for _, s := range systems {
		for k, name := range pctNames {
			c := sysColor[s][k]
			fillRect(img, x, y+3, 18, 4, c)
			label := s + " " + name
			drawText(img, x+24, y, label, colText, 1)
			x += 24 + textWidth(label, 1) + 18
		}
	}

	pw := (plotW - 3*panelPad) / 2
	ph := (plotH - legendH - 3*panelPad) / 2
	for i, hop := range latency.PathHops {
		px := panelPad + (i%2)*(pw+panelPad)
		py := legendH + panelPad + (i/2)*(ph+panelPad)
		drawPanel(img, image.Rect(px, py, px+pw, py+ph), hop, rates, systems, res)
	}
	return png.Encode(w, img)
}

func drawPanel(img *image.RGBA, r image.Rectangle, hop latency.Hop, rates []int, systems []string, res *Results) {
	drawText(img, r.Min.X+axisL, r.Min.Y+6, hop.String(), colText, 2)
	area := image.Rect(r.Min.X+axisL, r.Min.Y+axisT, r.Max.X-axisR, r.Max.Y-axisB)

	// Value range over every line of this panel, in µs.
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, st := range res.Steps {
		if _, ok := st.column(); !ok || st.Err != "" || st.Latency.Hops[hop].Count == 0 {
			continue
		}
		for k := range pctNames {
			v := float64(pctValue(st.Latency.Hops[hop], k)) / 1e3
			if v > 0 {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	// Axes and x labels.
	line(img, area.Min.X, area.Max.Y, area.Max.X, area.Max.Y, colAxis, 1)
	line(img, area.Min.X, area.Min.Y, area.Min.X, area.Max.Y, colAxis, 1)
	xAt := func(i int) int {
		if len(rates) == 1 {
			return (area.Min.X + area.Max.X) / 2
		}
		return area.Min.X + 20 + i*(area.Dx()-40)/(len(rates)-1)
	}
	for i, rt := range rates {
		x := xAt(i)
		line(img, x, area.Max.Y, x, area.Max.Y+4, colAxis, 1)
		l := rateLabel(rt)
		drawText(img, x-textWidth(l, 1)/2, area.Max.Y+8, l, colText, 1)
	}
	drawText(img, area.Max.X-textWidth("target rate", 1), area.Max.Y+22, "target rate", colText, 1)
	if math.IsInf(lo, 1) {
		drawText(img, area.Min.X+20, (area.Min.Y+area.Max.Y)/2, "no data", colText, 2)
		return
	}
	dLo, dHi := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if dHi <= dLo {
		dHi = dLo + 1
	}
	yAt := func(v float64) int {
		f := (math.Log10(v) - dLo) / (dHi - dLo)
		return area.Max.Y - int(f*float64(area.Dy()))
	}
	for d := dLo; d <= dHi; d++ {
		y := yAt(math.Pow(10, d))
		line(img, area.Min.X+1, y, area.Max.X, y, colGrid, 1)
		line(img, area.Min.X-4, y, area.Min.X, y, colAxis, 1)
		l := fmtUs(math.Pow(10, d))
		drawText(img, area.Min.X-8-textWidth(l, 1), y-3, l, colText, 1)
	}
	// Lines: one per system and percentile, across rates.
	for _, sys := range systems {
		for k := range pctNames {
			c := sysColor[sys][k]
			prevX, prevY, have := 0, 0, false
			for i, rt := range rates {
				st, ok := findStep(res, sys, rt)
				if !ok || st.Latency.Hops[hop].Count == 0 {
					have = false
					continue
				}
				v := float64(pctValue(st.Latency.Hops[hop], k)) / 1e3
				if v <= 0 {
					have = false
					continue
				}
				x, y := xAt(i), yAt(v)
				fillRect(img, x-3, y-3, 7, 7, c)
				if have {
					line(img, prevX, prevY, x, y, c, 2)
				}
				prevX, prevY, have = x, y, true
			}
		}
	}
}

// findStep returns sys's step shown in column rate (0: its max).
func findStep(res *Results, sys string, rate int) (StepResult, bool) {
	for _, st := range res.Steps {
		if col, ok := st.column(); ok && st.System == sys && col == rate && st.Err == "" {
			return st, true
		}
	}
	return StepResult{}, false
}

// columns lists the rate columns of res in sweep order (0, "max", last).
func columns(res *Results) []int {
	var rates []int
	seen, max := map[int]bool{}, false
	for _, st := range res.Steps {
		col, ok := st.column()
		switch {
		case !ok:
		case col == 0:
			max = true
		case !seen[col]:
			seen[col] = true
			rates = append(rates, col)
		}
	}
	if max {
		rates = append(rates, 0)
	}
	return rates
}

// fmtUs labels a power of ten of µs: "0.1", "10", "1k", "10k".
func fmtUs(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%gs", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%gms", v/1e3)
	}
	return fmt.Sprintf("%gus", v)
}

func fillRect(img *image.RGBA, x, y, w, h int, c color.Color) {
	draw.Draw(img, image.Rect(x, y, x+w, y+h), &image.Uniform{c}, image.Point{}, draw.Src)
}

// line draws a straight line of the given thickness (Bresenham).
func line(img *image.RGBA, x0, y0, x1, y1 int, c color.Color, thick int) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := 1, 1
	if x0 > x1 {
		sx = -1
	}
	if y0 > y1 {
		sy = -1
	}
	e := dx + dy
	for {
		for t := 0; t < thick; t++ {
			img.Set(x0+t, y0, c)
			img.Set(x0, y0+t, c)
		}
		if x0 == x1 && y0 == y1 {
			return
		}
		e2 := 2 * e
		if e2 >= dy {
			e += dy
			x0 += sx
		}
		if e2 <= dx {
			e += dx
			y0 += sy
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}
