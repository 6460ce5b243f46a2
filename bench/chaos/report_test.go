package main

import (
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
