package jobs

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// Every attempt is reported once, after its outcome is committed, with the
// job's correlation; workers log it with job_id, kind and request_id; the
// handler's context carries the job's Ref.
func TestAttemptsReportedLoggedAndCorrelated(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	opts := testOptions(t, nil)
	opts.Logger = zap.New(core).Named("craftedge.jobs")
	var (
		mu    sync.Mutex
		infos []AttemptInfo
		refs  []Ref
	)
	opts.OnAttempt = func(i AttemptInfo) {
		mu.Lock()
		infos = append(infos, i)
		mu.Unlock()
	}
	q := openQueue(t, nil, opts)
	fail := errors.New("vendor said 503")
	if err := q.Register("flaky", KindConfig{MaxAttempts: 2, BaseBackoff: time.Millisecond, MaxBackoff: time.Millisecond},
		Single(func(ctx context.Context, task *Task) error {
			r, ok := RefFrom(ctx)
			if !ok {
				return Permanent(errors.New("no Ref in the handler's context"))
			}
			mu.Lock()
			refs = append(refs, r)
			mu.Unlock()
			return fail
		})); err != nil {
		t.Fatal(err)
	}
	if err := q.Register("fine", KindConfig{}, ok); err != nil {
		t.Fatal(err)
	}
	const rid = "5f0c6a34-2a55-4a4e-9c1e-0c5a1d6c9e11"
	flaky, _ := mustEnqueue(t, q, EnqueueRequest{Kind: "flaky", Correlation: rid})
	fine, _ := mustEnqueue(t, q, EnqueueRequest{Kind: "fine"})
	if flaky.Correlation != rid {
		t.Fatalf("enqueued job correlation = %q", flaky.Correlation)
	}
	startRun(t, q)
	waitState(t, q, flaky.ID, StateDead)
	waitState(t, q, fine.ID, StateDone)
	if got := mustGet(t, q, flaky.ID).Correlation; got != rid {
		t.Fatalf("stored correlation = %q", got)
	}
	// OnAttempt and the attempt's log line come after its commit: wait for
	// the three attempts to be reported, not just committed.
	waitFor(t, "three attempts reported", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(infos) == 3
	})
	waitFor(t, "the dead-letter log line", func() bool {
		return logs.FilterMessage("job dead-lettered").Len() == 1 && logs.FilterMessage("job done").Len() == 1
	})

	mu.Lock()
	defer mu.Unlock()
	var outcomes []string
	for _, i := range infos {
		if i.ID == flaky.ID {
			outcomes = append(outcomes, i.Outcome)
			if i.Correlation != rid || i.Kind != "flaky" || !errors.Is(i.Err, fail) {
				t.Errorf("attempt info %+v", i)
			}
		} else if i.ID != fine.ID || i.Outcome != AttemptDone || i.Err != nil || i.Correlation != "" {
			t.Errorf("attempt info %+v", i)
		}
	}
	if strings.Join(outcomes, ",") != "retry,dead" {
		t.Errorf("flaky outcomes %v, want retry,dead", outcomes)
	}
	if len(refs) != 2 || refs[0] != (Ref{ID: flaky.ID, Kind: "flaky", Correlation: rid, Attempt: 1}) || refs[1].Attempt != 2 {
		t.Errorf("handler refs %+v", refs)
	}

	// Log lines: started, failed, dead-lettered, each with the ids.
	want := map[string]zapcore.Level{"job started": zapcore.DebugLevel,
		"job attempt failed; will retry": zapcore.WarnLevel, "job dead-lettered": zapcore.ErrorLevel}
	for _, e := range logs.All() {
		if e.LoggerName != "craftedge.jobs" {
			t.Errorf("log %q from logger %q, want the caller's craftedge.jobs", e.Message, e.LoggerName)
		}
		ctx := e.ContextMap()
		if ctx["job_id"] != flaky.ID {
			continue
		}
		if ctx["request_id"] != rid || ctx["kind"] != "flaky" {
			t.Errorf("log %q without the job's ids: %v", e.Message, ctx)
		}
		if lvl, ok := want[e.Message]; ok && lvl == e.Level {
			delete(want, e.Message)
		}
	}
	if len(want) != 0 {
		t.Errorf("missing log lines %v", want)
	}
	if n := logs.FilterMessage("job done").FilterField(zap.String("job_id", fine.ID)).Len(); n != 1 {
		t.Errorf("%d 'job done' lines for the fine job", n)
	}
}

func TestCorrelationValidated(t *testing.T) {
	q := openQueue(t, nil, testOptions(t, nil))
	if err := q.Register("k", KindConfig{}, ok); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"a b", "line\nforged", strings.Repeat("x", 129), "é"} {
		if _, _, err := q.Enqueue(context.Background(), EnqueueRequest{Kind: "k", Correlation: bad}); !errors.Is(err, ErrInvalid) ||
			!strings.Contains(err.Error(), "correlation") {
			t.Errorf("correlation %q: err %v, want ErrInvalid naming the correlation", bad, err)
		}
	}
}
