package main

import (
	"testing"
	"time"
)

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func TestPercentile(t *testing.T) {
	var sorted []time.Duration
	for i := 1; i <= 100; i++ {
		sorted = append(sorted, ms(i))
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, ms(50)}, {95, ms(95)}, {99, ms(99)}, {100, ms(100)}, {0, ms(1)}, {0.5, ms(1)}} {
		if got := percentile(sorted, c.p); got != c.want {
			t.Errorf("p%v = %v, want %v", c.p, got, c.want)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("empty p50 = %v", got)
	}
	if got := percentile([]time.Duration{ms(7)}, 99); got != ms(7) {
		t.Errorf("single p99 = %v", got)
	}
	// Nearest rank: p95 of 10 values is the 10th, p50 the 5th.
	ten := []time.Duration{ms(1), ms(2), ms(3), ms(4), ms(5), ms(6), ms(7), ms(8), ms(9), ms(10)}
	if percentile(ten, 95) != ms(10) || percentile(ten, 50) != ms(5) {
		t.Errorf("p95, p50 of 10 = %v, %v", percentile(ten, 95), percentile(ten, 50))
	}
}

func TestSummarize(t *testing.T) {
	now := time.Now()
	samples := []Sample{
		{Status: 200, Latency: ms(3), Serve: ServeHit},
		{Status: 200, Latency: ms(1), Serve: ServeHit},
		{Status: 503, Latency: ms(2), Serve: ServeFallback},
		{Status: 0, Latency: ms(900)}, // transport: not in the percentiles
		{Status: 304, Latency: ms(4), Serve: ServeHit, Start: now},
	}
	s := summarize(samples)
	if s.N != 5 || s.ByClass["2xx"] != 2 || s.ByClass["5xx"] != 1 || s.ByClass["transport"] != 1 || s.ByClass["3xx"] != 1 {
		t.Fatalf("classes = %v (n %d)", s.ByClass, s.N)
	}
	if s.P50 != ms(2) || s.P99 != ms(4) || s.Max != ms(4) {
		t.Fatalf("p50 %v p99 %v max %v", s.P50, s.P99, s.Max)
	}
	if got := s.ServeShare(ServeHit); got != 0.75 {
		t.Fatalf("hit share = %v", got)
	}
	if got := s.Rate(s.ByClass["5xx"]); got != 0.2 {
		t.Fatalf("5xx rate = %v", got)
	}
	if e := summarize(nil); e.N != 0 || e.P95 != 0 || e.ServeShare(ServeHit) != 0 || e.Rate(1) != 0 {
		t.Fatalf("empty summary = %+v", e)
	}
}

func TestClassifyCacheStatus(t *testing.T) {
	for _, c := range []struct {
		in     string
		serve  Serve
		stored bool
	}{
		{"craftedge; hit", ServeHit, true},
		{"craftedge; fwd=miss; stored", ServeMiss, true},
		{"craftedge; fwd=miss; stored; collapsed", ServeMiss, true},
		{"craftedge; fwd=stale; fwd-status=304; stored", ServeMiss, true},
		{"craftedge; fwd=miss; detail=private", ServeMiss, false},
		{"craftedge; fwd=bypass; detail=session", ServeBypass, false},
		{"craftedge; hit; detail=stale", ServeStale, true},
		{"craftedge; fwd=stale; detail=stale-after", ServeStale, true},
		{"craftedge; fwd=stale; detail=stale-after-snapshot", ServeSnapshot, true},
		{"craftedge; hit; detail=snapshot", ServeSnapshot, true},
		{"craftedge; fwd=stale; fwd-status=502; detail=stale", ServeStale, true},
		{"craftedge; fwd=miss; fwd-status=504; detail=snapshot", ServeSnapshot, true},
		{"craftedge; fwd=miss; fwd-status=502; detail=fallback", ServeFallback, false},
		{"craftedge; fwd=miss; fwd-status=502; detail=no-copy", ServeOther, false},
		{"craftedge; fwd=miss; fwd-status=500; detail=upstream-error", ServeOther, false},
		{"", ServeOther, false},
		{"othercache; hit", ServeOther, false},
	} {
		serve, stored := classifyCacheStatus(c.in)
		if serve != c.serve || stored != c.stored {
			t.Errorf("%q = %s, %v; want %s, %v", c.in, serve, stored, c.serve, c.stored)
		}
	}
}

func TestBuckets(t *testing.T) {
	start := time.Unix(1000, 0)
	at := func(sec float64) time.Time { return start.Add(time.Duration(sec * float64(time.Second))) }
	samples := []Sample{
		{Start: at(0.1), Status: 200, Latency: ms(1)},
		{Start: at(0.9), Status: 200, Latency: ms(9)},
		{Start: at(2.5), Status: 200, Latency: ms(5)},
		{Start: at(2.6), Status: 0, Latency: ms(500)},
	}
	b := buckets(samples, start, time.Second)
	if len(b) != 2 || b[0].At != 0 || b[0].N != 2 || b[0].P50 != ms(1) || b[0].P99 != ms(9) ||
		b[1].At != 2*time.Second || b[1].N != 1 || b[1].Max != ms(5) {
		t.Fatalf("buckets = %+v", b)
	}
}

func TestHitSeriesAndRecovery(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration, serve Serve, status int) Sample {
		return Sample{Class: ClassPage, Start: t0.Add(d), Status: status, Serve: serve}
	}
	samples := []Sample{
		at(-ms(1), ServeHit, 200),       // before the origin: not counted
		at(0, ServeMiss, 200),           // second 1: 1 of 3 hits
		at(ms(400), ServeHit, 200),      //
		at(ms(999), ServeSnapshot, 200), //
		at(ms(500), ServeOther, 0),      // transport error: not a response
		at(ms(2100), ServeHit, 200),     // second 3: 2 of 2 (second 2 empty)
		at(ms(2200), ServeHit, 200),     //
		at(ms(3000), ServeHit, 200),     // at the end: not counted
	}
	s := hitSeries(samples, t0, t0.Add(3*time.Second), time.Second)
	if len(s) != 3 {
		t.Fatalf("%d slots, want 3 (empty ones included): %+v", len(s), s)
	}
	want := []HitPoint{{0, 1, 3, 0}, {time.Second, 0, 0, 0}, {2 * time.Second, 2, 2, 0}}
	for i := range want {
		if s[i] != want[i] {
			t.Errorf("slot %d = %+v, want %+v", i, s[i], want[i])
		}
	}
	if got, ok := recovered(s, 0.5, time.Second); !ok || got != 3*time.Second {
		t.Errorf("recovered(0.5) = %v, %v; want 3s (the empty second does not count)", got, ok)
	}
	if got, ok := recovered(s, 1.0/3, time.Second); !ok || got != time.Second {
		t.Errorf("recovered(1/3) = %v, %v; want 1s", got, ok)
	}
	if _, ok := recovered(s, 1.01, time.Second); ok {
		t.Error("recovered above 100%")
	}
	if s := hitSeries(samples, t0, t0, time.Second); s != nil {
		t.Errorf("empty span: %+v", s)
	}
	if got := hitRatio(samples[1:5]); got != 1.0/3 {
		t.Errorf("hitRatio = %v, want 1/3 (transport errors not counted)", got)
	}
}
