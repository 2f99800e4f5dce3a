package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"text/tabwriter"
)

// WriteSummary prints the final per-operation table.
func WriteSummary(w io.Writer, r *Result) error {
	fmt.Fprintf(w, "%s on %s: concurrency %d, %.1fs measured after %.1fs warm-up, %d keys, %dB keys, %dB values, %s\n",
		r.Workload.Name, r.Driver, r.Concurrency, r.DurationSec, r.WarmupSec, r.Workload.Keys,
		r.Workload.KeySize, r.Workload.ValueSize, r.Workload.Distribution)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "op\tops\tops/s\terrors\tmean(ms)\tp50(ms)\tp95(ms)\tp99(ms)\tp99.9(ms)\tmax(ms)\t")
	rows := append([]OpSummary{}, r.Ops...)
	if len(r.Ops) > 1 {
		rows = append(rows, r.Total)
	}
	for _, o := range rows {
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t\n",
			o.Op, o.Count, o.OpsPerSec, o.Errors, o.MeanMs, o.P50Ms, o.P95Ms, o.P99Ms, o.P999Ms, o.MaxMs)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if r.FirstError != "" {
		fmt.Fprintf(w, "first error: %s\n", r.FirstError)
	}
	return nil
}

// WriteJSONFile writes r as indented JSON ("-" = stdout).
func WriteJSONFile(path string, r *Result) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if path == "-" {
		_, err = os.Stdout.Write(b)
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

var plotColors = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd"}

// niceMax rounds v up to 1, 2 or 5 times a power of ten.
func niceMax(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// WriteSVG draws the timeline: throughput per operation (top) and p99
// latency per operation (bottom) over time; the warm-up is shaded.
func WriteSVG(w io.Writer, r *Result) error {
	const (
		width, panelH   = 900, 260
		left, right     = 80, 150
		top, gap, below = 40, 60, 40
	)
	height := top + 2*panelH + gap + below
	plotW := float64(width - left - right)
	tMax := 0.0
	for _, s := range r.Timeline {
		tMax = math.Max(tMax, s.T)
	}
	if tMax == 0 {
		tMax = 1
	}
	var ops []string
	if len(r.Timeline) > 0 {
		for _, o := range r.Timeline[0].Ops {
			ops = append(ops, o.Op)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="14">%s on %s, concurrency %d</text>`+"\n", left, xmlEscape(r.Workload.Name), xmlEscape(r.Driver), r.Concurrency)
	x := func(t float64) float64 { return float64(left) + t/tMax*plotW }
	panel := func(y0 int, title, unit string, val func(SampleOp) float64) {
		vMax := 0.0
		for _, s := range r.Timeline {
			for _, o := range s.Ops {
				vMax = math.Max(vMax, val(o))
			}
		}
		vMax = niceMax(vMax)
		yOf := func(v float64) float64 { return float64(y0+panelH) - v/vMax*float64(panelH) }
		if r.WarmupSec > 0 {
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="#eeeeee"/>`+"\n", left, y0, x(math.Min(r.WarmupSec, tMax))-float64(left), panelH)
		}
		for i := 0; i <= 4; i++ {
			v := vMax * float64(i) / 4
			y := yOf(v)
			fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#cccccc"/>`+"\n", left, y, width-right, y)
			fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, y+4, fmtNum(v))
		}
		for i := 0; i <= 10; i++ {
			t := tMax * float64(i) / 10
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%.0fs</text>`+"\n", x(t), y0+panelH+16, t)
		}
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.0f" height="%d" fill="none" stroke="black"/>`+"\n", left, y0, plotW, panelH)
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s (%s)</text>`+"\n", left, y0-8, title, unit)
		for i, op := range ops {
			color := plotColors[i%len(plotColors)]
			var pts []string
			for _, s := range r.Timeline {
				for _, o := range s.Ops {
					if o.Op == op {
						pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(s.T), yOf(val(o))))
					}
				}
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", color, strings.Join(pts, " "))
			ly := y0 + 16 + 18*i
			fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="3"/>`+"\n", width-right+10, ly-4, width-right+30, ly-4, color)
			fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", width-right+36, ly, xmlEscape(op))
		}
	}
	panel(top, "throughput", "ops/s", func(o SampleOp) float64 { return o.OpsPerSec })
	panel(top+panelH+gap, "p99 latency", "ms", func(o SampleOp) float64 { return o.P99Ms })
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteSVGFile writes the plot to path.
func WriteSVGFile(path string, r *Result) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := WriteSVG(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func fmtNum(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.1fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.0fk", v/1e3)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	case v >= 10 || v == 0:
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.2g", v)
}

func xmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}
