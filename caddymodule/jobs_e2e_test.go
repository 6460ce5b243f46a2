package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
	"github.com/craftedge/craftedge/jobs"
)

// testJobs records what the test job kind did, by idempotency key.
var testJobs = struct {
	sync.Mutex
	runs map[string]int
}{runs: map[string]int{}}

func init() {
	// test.echo: payload "ok" succeeds; "fail-first" fails its first
	// attempt only; "poison" fails permanently; "later" asks for an hour.
	registerJobKind("test.echo", jobs.KindConfig{Concurrency: 2, MaxAttempts: 5}, func(a *App) jobs.Handler {
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
			case "panic":
				panicInJobHandler()
			}
			return nil
		})
	})
}

// panicInJobHandler is a job handler's bug (test.echo's payload "panic"):
// a write to a nil map.
func panicInJobHandler() {
	var m map[string]int
	m["x"]++
}

func testJobRuns(key string) int {
	testJobs.Lock()
	defer testJobs.Unlock()
	return testJobs.runs[key]
}

func enqueue(g *e2e.Gateway, key, payload string) jobs.Job {
	g.T.Helper()
	job, created, err := currentApp.Load().jobs.Enqueue(context.Background(), jobs.EnqueueRequest{
		Kind: "test.echo", Key: key, Payload: []byte(payload),
	})
	if err != nil || !created {
		g.T.Fatalf("enqueue %s: created=%v err=%v", key, created, err)
	}
	return job
}

func TestJobsRunRetryDeadLetterReplayFlushViaAdmin(t *testing.T) {
	o := e2e.NewOrigin(t)
	g := e2e.StartGateway(t, o, e2e.Options{GlobalExtra: `jobs {
			retention 1h
			kind test.echo {
				concurrency 2
				max_attempts 1
				backoff 1ms 10ms
			}
		}`})
	prefix := t.Name() + ":"

	ok := enqueue(g, prefix+"ok", "ok")
	e2e.WaitJobState(g, ok.ID, jobs.StateDone)
	// The same idempotency key is not run twice.
	if _, created, _ := currentApp.Load().jobs.Enqueue(context.Background(), jobs.EnqueueRequest{Kind: "test.echo", Key: prefix + "ok"}); created {
		t.Fatal("duplicate idempotency key created a second job")
	}

	// With max_attempts 1 a failure dead-letters; the dead letter keeps
	// the payload and the attempt's error.
	flaky := enqueue(g, prefix+"flaky", "fail-first")
	dead := e2e.WaitJobState(g, flaky.ID, jobs.StateDead)
	if string(dead.Payload) != "fail-first" || len(dead.History) != 1 || !strings.Contains(dead.History[0].Error, "503") {
		t.Fatalf("dead letter lacks payload or history: %+v", dead)
	}
	poison := enqueue(g, prefix+"poison", "poison")
	e2e.WaitJobState(g, poison.ID, jobs.StateDead)

	r := g.Admin(http.MethodGet, "/craftedge/jobs?kind=test.echo&state=dead", "")
	e2e.WantStatus(t, r, 200)
	var list jobsList
	if err := json.Unmarshal([]byte(r.Body), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Jobs) != 2 || list.Stats.Kinds["test.echo"].Dead != 2 {
		t.Fatalf("dead list: %d jobs, stats %+v", len(list.Jobs), list.Stats.Kinds["test.echo"])
	}
	if h := health(g); h.Jobs == nil || h.Jobs.Dead != 2 {
		t.Fatalf("health does not show 2 dead letters: %+v", h.Jobs)
	}
	if scrape(g, `craftedge_jobs{kind="test.echo",state="dead"}`) != 2 {
		t.Fatal("dead-letter gauge is not 2")
	}

	// Replay: the flaky job now succeeds, the poison one dies again.
	r = g.Admin(http.MethodPost, "/craftedge/jobs/dead/test.echo/replay", "")
	e2e.WantStatus(t, r, 200)
	if !strings.Contains(r.Body, `"replayed": 2`) {
		t.Fatalf("replay answered %s", r.Body)
	}
	e2e.WaitJobState(g, flaky.ID, jobs.StateDone)
	e2e.WaitJobState(g, poison.ID, jobs.StateDead)
	if testJobRuns(prefix+"flaky") != 2 {
		t.Fatalf("flaky ran %d times, want 2", testJobRuns(prefix+"flaky"))
	}

	// Flush the poisoned kind.
	r = g.Admin(http.MethodDelete, "/craftedge/jobs/dead/test.echo", "")
	e2e.WantStatus(t, r, 200)
	if !strings.Contains(r.Body, `"flushed": 1`) {
		t.Fatalf("flush answered %s", r.Body)
	}
	e2e.WantStatus(t, g.Admin(http.MethodGet, "/craftedge/jobs/"+poison.ID, ""), http.StatusNotFound)

	// Bad requests.
	e2e.WantStatus(t, g.Admin(http.MethodGet, "/craftedge/jobs/not-an-id", ""), http.StatusBadRequest)
	e2e.WantStatus(t, g.Admin(http.MethodGet, "/craftedge/jobs/00000000000fffff", ""), http.StatusNotFound)
	e2e.WantStatus(t, g.Admin(http.MethodGet, "/craftedge/jobs?state=stuck", ""), http.StatusBadRequest)
	e2e.WantStatus(t, g.Admin(http.MethodGet, "/craftedge/jobs?limit=0", ""), http.StatusBadRequest)
	e2e.WantStatus(t, g.Admin(http.MethodPost, "/craftedge/jobs/"+ok.ID+"/retry", ""), http.StatusConflict)
	if r := g.Admin(http.MethodPost, "/craftedge/jobs/dead/no.such.kind/replay", ""); !strings.Contains(r.Body, `"replayed": 0`) {
		t.Fatalf("replay of a kind without dead letters answered %s", r.Body)
	}
	e2e.WantStatus(t, g.Admin(http.MethodGet, "/craftedge/jobs/a/b/c/d", ""), http.StatusNotFound)
	e2e.WantStatus(t, g.Admin(http.MethodPut, "/craftedge/jobs/stats", ""), http.StatusMethodNotAllowed)
}

func TestJobRetryAfterAndRetryNow(t *testing.T) {
	o := e2e.NewOrigin(t)
	g := e2e.StartGateway(t, o, e2e.Options{})
	prefix := t.Name() + ":"
	// Retry-After (a vendor's 429) puts a job an hour out; "retry now" runs it at once.
	later := enqueue(g, prefix+"later", "later")
	e2e.WaitFor(t, "the first attempt of the delayed job", func() bool { return testJobRuns(prefix+"later") == 1 })
	j := e2e.WaitJobState(g, later.ID, jobs.StateReady)
	if j.RunAt.Before(time.Now().Add(50 * time.Minute)) {
		t.Fatalf("Retry-After not honoured: run_at %s", j.RunAt)
	}
	e2e.WantStatus(t, g.Admin(http.MethodPost, "/craftedge/jobs/"+later.ID+"/retry", ""), 200)
	e2e.WaitJobState(g, later.ID, jobs.StateDone)

}

func TestJobsConfigErrors(t *testing.T) {
	o := e2e.NewOrigin(t)
	for _, tc := range []struct{ extra, want string }{
		{"jobs {\n kind test.echo {\n concurrency zero\n }\n }", "concurrency must be a positive integer"},
		{"jobs {\n kind test.echo {\n max_attempts 2 3\n }\n }", "wrong argument count"},
		{"jobs {\n kind test.echo {\n batch\n }\n }", "batch needs a value"},
		{"jobs {\n kind test.echo {\n backoff 10s 1s\n }\n }", "backoff max"},
		{"jobs {\n frobnicate\n }", "unrecognized jobs option"},
	} {
		e2e.AssertLoadError(t, e2e.CaddyfileFor(o, e2e.Options{Storage: t.TempDir() + "/x.db", GlobalExtra: tc.extra}), tc.want)
	}
	// A kind no part of craftedge runs is a provisioning error.
	caddytest.AssertLoadError(t, e2e.CaddyfileFor(o, e2e.Options{Storage: t.TempDir() + "/x.db",
		GlobalExtra: "jobs {\n kind no.such.kind {\n concurrency 2\n }\n }"}), "caddyfile", `unknown job kind \"no.such.kind\"`)
}

// A job handler's own panic (not bbolt's) goes on to the queue through
// the storage guard (guardJobHandler): it counts as a failed attempt, and
// the log line says where it was raised (the handler's stack, not the
// guard's raising it again).
func TestJobHandlerPanicLogsItsOwnStack(t *testing.T) {
	o := e2e.NewOrigin(t)
	opts := e2e.Options{Storage: filepath.Join(t.TempDir(), "craftedge.db"), GlobalExtra: `jobs {
			kind test.echo {
				max_attempts 1
			}
		}`}
	e2e.StartGateway(t, o, opts) // Caddy running, its admin API up
	logPath := filepath.Join(t.TempDir(), "caddy.log")
	g := startGatewayLogging(t, o, opts, logPath)
	job := enqueue(g, t.Name(), "panic")
	dead := e2e.WaitJobState(g, job.ID, jobs.StateDead)
	if len(dead.History) != 1 || !strings.Contains(dead.History[0].Error, "handler panicked") || !strings.Contains(dead.History[0].Error, "nil map") {
		t.Fatalf("the panic was not counted as the job's failed attempt: %+v", dead.History)
	}
	logged, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(logged)) {
		if strings.Contains(line, "job handler panicked") {
			if !strings.Contains(line, "panicInJobHandler") {
				t.Fatalf("the panic's log line does not say where it was raised: %s", line)
			}
			return
		}
	}
	t.Fatalf("no \"job handler panicked\" line in %s", logged)
}
