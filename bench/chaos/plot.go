package main

import (
	"image/color"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// renderPlot draws per-second latency of page views and live vendor reads
// over the run, fault windows shaded, log scale.
func renderPlot(r *Result, path string) error {
	p := plot.New()
	p.Title.Text = "craftedge under chaos: latency per second (fault windows shaded)"
	p.X.Label.Text = "seconds since start"
	p.Y.Label.Text = "latency (ms, log scale)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	const yMin, yMax = 0.05, 20000.0
	p.Y.Min, p.Y.Max = yMin, yMax
	end := 0.0
	for _, ph := range r.Phases {
		end = max(end, ph.End.Sub(r.Start).Seconds())
	}
	p.X.Min, p.X.Max = 0, end

	shades := []color.RGBA{
		{255, 205, 210, 255}, {255, 224, 178, 255}, {255, 171, 145, 255}, {200, 230, 201, 255},
		{178, 235, 242, 255}, {197, 202, 233, 255}, {225, 190, 231, 255}, {189, 189, 189, 255},
	}
	for _, ph := range r.Phases {
		if ph.Fault <= 0 {
			continue
		}
		x0, x1 := ph.Start.Sub(r.Start).Seconds(), ph.End.Sub(r.Start).Seconds()
		poly, err := plotter.NewPolygon(plotter.XYs{{X: x0, Y: yMin}, {X: x1, Y: yMin}, {X: x1, Y: yMax}, {X: x0, Y: yMax}})
		if err != nil {
			return err
		}
		poly.Color = shades[(ph.Fault-1)%len(shades)]
		poly.LineStyle.Width = 0
		p.Add(poly)
		labels, err := plotter.NewLabels(plotter.XYLabels{XYs: plotter.XYs{{X: (x0 + x1) / 2, Y: yMax / 3}}, Labels: []string{string(rune('0' + ph.Fault))}})
		if err != nil {
			return err
		}
		p.Add(labels)
	}
	line := func(name string, samples []Sample, pick func(Bucket) time.Duration, c color.Color, dashed bool) error {
		var xy plotter.XYs
		for _, b := range buckets(samples, r.Start, time.Second) {
			ms := max(float64(pick(b))/float64(time.Millisecond), yMin)
			xy = append(xy, plotter.XY{X: b.At.Seconds() + 0.5, Y: ms})
		}
		if len(xy) == 0 {
			return nil
		}
		l, err := plotter.NewLine(xy)
		if err != nil {
			return err
		}
		l.Color = c
		l.Width = vg.Points(1)
		if dashed {
			l.Dashes = []vg.Length{vg.Points(3), vg.Points(2)}
		}
		p.Add(l)
		p.Legend.Add(name, l)
		return nil
	}
	pages := ofClass(r.Samples, ClassPage)
	live := ofClass(r.Samples, ClassLive)
	if err := line("page views p50", pages, func(b Bucket) time.Duration { return b.P50 }, color.RGBA{30, 90, 200, 255}, false); err != nil {
		return err
	}
	if err := line("page views p99", pages, func(b Bucket) time.Duration { return b.P99 }, color.RGBA{200, 30, 30, 255}, false); err != nil {
		return err
	}
	if err := line("live vendor reads p99", live, func(b Bucket) time.Duration { return b.P99 }, color.RGBA{20, 140, 60, 255}, true); err != nil {
		return err
	}
	p.Legend.Top = true
	p.Legend.Left = true
	p.Legend.YOffs = -vg.Points(12)
	p.Add(plotter.NewGrid())
	return p.Save(28*vg.Centimeter, 12*vg.Centimeter, path)
}
