package main

import (
	"strings"
	"testing"
	"time"
)

func TestStraddlesCraftDown(t *testing.T) {
	t0 := time.Unix(1000, 0)
	r := &Result{Phases: []Phase{
		{Name: "healthy", CraftUp: true, Start: t0, End: t0.Add(10 * time.Second)},
		{Name: "1. Craft down", Fault: 1, Start: t0.Add(10 * time.Second), End: t0.Add(20 * time.Second)},
		{Name: "healthy", CraftUp: true, Start: t0.Add(20 * time.Second), End: t0.Add(30 * time.Second)},
	}}
	late := Sample{Start: t0.Add(9999 * time.Millisecond), Latency: 5 * time.Millisecond}
	early := Sample{Start: t0.Add(time.Second), Latency: 5 * time.Millisecond}
	if !r.straddlesCraftDown(0, late) || r.straddlesCraftDown(0, early) {
		t.Fatal("a save in flight at the start of Craft down must be set apart, an earlier one not")
	}
	// The last window, and a window followed by Craft up, never straddle.
	if r.straddlesCraftDown(2, Sample{Start: t0.Add(29 * time.Second), Latency: 5 * time.Second}) {
		t.Fatal("last window")
	}
}

// The warm restart targets are measured from the restart: p95 after it
// against the healthy window before fault 8, and the first second whose hit
// ratio is back to 90% of the healthy window's.
func TestWarmRestartTargets(t *testing.T) {
	t0 := time.Unix(1000, 0)
	r := &Result{Phases: []Phase{
		{Name: "healthy", CraftUp: true, Start: t0, End: t0.Add(10 * time.Second)},
		{Name: "8. craftedge SIGKILL + restart", Fault: 8, CraftUp: true, Start: t0.Add(10 * time.Second), End: t0.Add(22 * time.Second)},
		{Name: "healthy", CraftUp: true, Start: t0.Add(22 * time.Second), End: t0.Add(30 * time.Second)},
	}}
	r.Restart.KilledAt = t0.Add(14 * time.Second)
	r.Restart.ReadyAt = t0.Add(14*time.Second + 200*time.Millisecond)
	page := func(at time.Duration, s Serve, lat time.Duration) {
		r.Samples = append(r.Samples, Sample{Class: ClassPage, Start: t0.Add(at), Status: 200, Serve: s, Latency: lat})
	}
	// Healthy: 9 hits in 10 each second, 1 ms; after the restart, misses
	// (5 ms) for the first 3 s, then as healthy.
	for sec := range 30 {
		for i := range 10 {
			at := time.Duration(sec)*time.Second + time.Duration(i)*50*time.Millisecond
			cold := at >= 14*time.Second && at < 17*time.Second+200*time.Millisecond
			switch {
			case cold:
				page(at, ServeMiss, 5*time.Millisecond)
			case i == 0:
				page(at, ServeMiss, time.Millisecond)
			default:
				page(at, ServeHit, time.Millisecond)
			}
		}
	}
	got := map[string]Target{}
	for _, tg := range r.targets() {
		got[tg.Name] = tg
	}
	p95 := got["after the SIGKILL restart, page p95 within 1.1x of the healthy window"]
	hit := got["hit ratio back to 90% of the healthy window's within 10 s of the restart"]
	if p95.Met || p95.Window != "8. craftedge SIGKILL + restart" {
		t.Errorf("p95 target %+v: want MISS (3 cold seconds of 8)", p95)
	}
	if !hit.Met || !strings.Contains(hit.Detail, "ending 4s after the restart") {
		t.Errorf("hit target %+v: want PASS, back in the 4th second", hit)
	}
	if rep := renderReport(r); !strings.Contains(rep, "## Warm restart") || !strings.Contains(rep, "| after the restart: p95 ms | 5.0 | 5.0 | 5.0 | 1.0 |") {
		t.Error("report without the warm restart section")
	}
}

// The warm start's progress per second after the restart comes from the
// health scrapes: the last reading of each second, "done N" once done;
// scrapes before the restart and failed ones are ignored.
func TestWarmProgress(t *testing.T) {
	ready := time.Unix(1000, 0)
	sp := func(at time.Duration, ok bool, state string, n int64) ScrapePoint {
		return ScrapePoint{At: ready.Add(at), OK: ok, Warm: WarmStartHealth{State: state, Refilled: n, ElapsedMS: 900}}
	}
	cells, done := warmProgress([]ScrapePoint{
		sp(-500*time.Millisecond, true, "done", 9), // the previous process
		sp(100*time.Millisecond, false, "", 0),
		sp(300*time.Millisecond, true, "running", 40),
		sp(1300*time.Millisecond, true, "done", 120),
		sp(2300*time.Millisecond, true, "done", 120),
	}, ready, 4)
	if strings.Join(cells, ",") != "40,done 120,done 120,–" {
		t.Fatalf("cells %q", cells)
	}
	if done == nil || done.Refilled != 120 || done.ElapsedMS != 900 {
		t.Fatalf("done %+v, want the reading at 1.3 s", done)
	}
}
