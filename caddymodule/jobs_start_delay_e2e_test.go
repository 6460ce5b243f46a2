package caddymodule

import (
	"testing"
	"time"

	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
	"github.com/craftedge/craftedge/jobs"
)

// After a cold start the job workers wait out jobs start_delay (on the
// modules' clock): a job enqueued meanwhile is stored and waits, health
// says when the workers start. A stop during the wait leaves the job in
// the file; the next start waits again, then runs it. A reload that keeps
// the memory tier does not wait; start_delay 0 does not wait either.
func TestJobsStartDelay(t *testing.T) {
	o := e2e.NewOrigin(t)
	delayed := e2e.Options{GlobalExtra: "jobs {\n start_delay 1h\n }"}
	g := e2e.StartGateway(t, o, delayed)
	prefix := t.Name() + ":"

	h := health(g)
	if h.Jobs == nil || h.Jobs.StartsAt == nil || h.Jobs.StartsAt.Before(h.Time.Add(59*time.Minute)) {
		t.Fatalf("health does not say the workers start in an hour: %+v (now %s)", h.Jobs, h.Time)
	}
	a := enqueue(g, prefix+"a", "ok")
	e2e.WaitJobState(g, a.ID, jobs.StateReady)

	// Stopped during the wait (Stop waits for the workers' goroutine):
	// the job never ran and is still in the file.
	e2e.StopGateway(t)
	if n := testJobRuns(prefix + "a"); n != 0 {
		t.Fatalf("job ran %d times during the start delay", n)
	}
	g.Reload(delayed) // a cold start again: the memory tier is new
	if j := e2e.WaitJobState(g, a.ID, jobs.StateReady); j.Attempts != 0 {
		t.Fatalf("job attempted %d times during the start delay", j.Attempts)
	}
	if h := health(g); h.Jobs == nil || h.Jobs.StartsAt == nil {
		t.Fatalf("health does not show the second start's delay: %+v", h.Jobs)
	}

	e2e.Advance(time.Hour + time.Second)
	e2e.WaitJobState(g, a.ID, jobs.StateDone)
	if n := testJobRuns(prefix + "a"); n != 1 {
		t.Fatalf("job ran %d times after the start delay, want 1", n)
	}
	if h := health(g); h.Jobs == nil || h.Jobs.StartsAt != nil {
		t.Fatalf("health still shows a start delay once the workers run: %+v", h.Jobs)
	}

	// A reload keeps the memory tier: no wait, although the config says 1h.
	g.Reload(delayed)
	if h := health(g); h.Jobs == nil || h.Jobs.StartsAt != nil {
		t.Fatalf("a reload waits: %+v", h.Jobs)
	}
	b := enqueue(g, prefix+"b", "ok")
	e2e.WaitJobState(g, b.ID, jobs.StateDone)

	// start_delay 0: a cold start runs jobs at once.
	g.Restart(e2e.Options{GlobalExtra: "jobs {\n start_delay 0\n }"})
	if h := health(g); h.Jobs == nil || h.Jobs.StartsAt != nil {
		t.Fatalf("start_delay 0 waits: %+v", h.Jobs)
	}
	c := enqueue(g, prefix+"c", "ok")
	e2e.WaitJobState(g, c.ID, jobs.StateDone)
}

// A negative start_delay is refused with the option named.
func TestJobsStartDelayNegative(t *testing.T) {
	o := e2e.NewOrigin(t)
	e2e.AssertLoadError(t, e2e.CaddyfileFor(o, e2e.Options{Storage: t.TempDir() + "/x.db",
		GlobalExtra: "jobs {\n start_delay -1s\n }"}), "start_delay must not be negative")
}
