package status

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/craftedge/craftedge/caddymodule"
	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
	"github.com/craftedge/craftedge/jobs"
)

var testJobs = struct {
	sync.Mutex
	runs map[string]int
}{runs: map[string]int{}}

func init() {
	// test.echo: payload "ok" succeeds; "fail-first" fails its first
	// attempt only; "poison" fails permanently; "later" asks for an hour.
	caddymodule.RegisterJobKind("test.echo", jobs.KindConfig{Concurrency: 2, MaxAttempts: 5}, func(a *caddymodule.App) jobs.Handler {
		return jobs.Single(func(ctx context.Context, t *jobs.Task) error {
			testJobs.Lock()
			testJobs.runs[t.IdempotencyKey()]++
			n := testJobs.runs[t.IdempotencyKey()]
			testJobs.Unlock()
			switch string(t.Job.Payload) {
			case "fail-first":
				if n == 1 {
					return errors.New("vendor said 503")
				}
			case "poison":
				return jobs.Permanent(errors.New("vendor said 422: invalid email"))
			case "later":
				if n == 1 {
					return jobs.RetryAfter(errors.New("vendor said 429"), time.Hour)
				}
			}
			return nil
		})
	})
}

func testJobRuns(key string) int {
	testJobs.Lock()
	defer testJobs.Unlock()
	return testJobs.runs[key]
}

// enqueue adds a test.echo job to the running app's queue.
func enqueue(g *e2e.Gateway, key, payload string) jobs.Job {
	g.T.Helper()
	app := caddymodule.ActiveApp()
	if app == nil {
		g.T.Fatal("no running craftedge app")
	}
	job, created, err := app.JobQueue().Enqueue(context.Background(), jobs.EnqueueRequest{
		Kind: "test.echo", Key: key, Payload: []byte(payload),
	})
	if err != nil || !created {
		g.T.Fatalf("enqueue %s: created=%v err=%v", key, created, err)
	}
	return job
}

// health is GET /craftedge/health.
func health(g *e2e.Gateway) caddymodule.Health {
	return e2e.AdminJSON[caddymodule.Health](g, "/craftedge/health")
}
