package circuit

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func fail(path string) Outcome { return Outcome{Kind: Failure, Path: path, Reason: "status 500"} }
func conn(path string) Outcome {
	return Outcome{Kind: ConnFailure, Path: path, Reason: "connection refused"}
}
func ok(path string) Outcome { return Outcome{Kind: Success, Path: path} }

// feed runs the outcomes through b in order and returns how many calls
// the breaker refused.
func feed(b *Breaker, outcomes ...Outcome) (refused int) {
	for _, o := range outcomes {
		if b.Run(func() Outcome { return o }) == ErrOpen {
			refused++
		}
	}
	return refused
}

// waitHalfOpen waits until b's cooldown has elapsed (gobreaker's wall
// clock) and it is half-open.
func waitHalfOpen(t *testing.T, b *Breaker) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for b.Status().State != HalfOpen {
		if time.Now().After(deadline) {
			t.Fatal("the breaker did not half-open after its cooldown")
		}
		time.Sleep(time.Millisecond) // polls gobreaker's wall-clock cooldown
	}
}

func repeat(n int, f func(i int) Outcome) []Outcome {
	out := make([]Outcome, n)
	for i := range out {
		out[i] = f(i)
	}
	return out
}

func TestTripPolicy(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cfg      Config
		outcomes []Outcome
		want     State
	}{
		{"one path, many failures", Config{}, repeat(100, func(int) Outcome { return fail("/broken") }), Closed},
		{"one path, query strings ignored", Config{},
			repeat(100, func(i int) Outcome { return fail(fmt.Sprintf("/search?q=%d", i)) }), Closed},
		{"two paths", Config{}, repeat(100, func(i int) Outcome { return fail(fmt.Sprint("/p", i%2)) }), Closed},
		{"five failures over three paths", Config{},
			[]Outcome{fail("/a"), fail("/a"), fail("/b"), fail("/a"), fail("/c")}, Open},
		{"four failures over four paths", Config{}, repeat(4, func(i int) Outcome { return fail(fmt.Sprint("/p", i)) }), Closed},
		{"a success resets the run", Config{},
			[]Outcome{fail("/a"), fail("/b"), fail("/c"), fail("/d"), ok("/e"), fail("/f"), fail("/g"), fail("/h"), fail("/i")}, Closed},
		{"connection failures need no spread", Config{}, repeat(5, func(int) Outcome { return conn("/x") }), Open},
		{"four connection failures", Config{}, repeat(4, func(int) Outcome { return conn("/x") }), Closed},
		{"a connection failure counts as a path", Config{},
			[]Outcome{fail("/a"), fail("/a"), fail("/b"), fail("/b"), conn("/a")}, Open},
		{"ignored outcomes neither count nor reset", Config{Failures: 3, MinPaths: 1},
			[]Outcome{fail("/a"), {Kind: Ignore}, fail("/a"), {Kind: Ignore}, fail("/a")}, Open},
		{"min_paths 1", Config{Failures: 2, MinPaths: 1}, []Outcome{fail("/a"), fail("/a")}, Open},
		{"min_paths above failures", Config{Failures: 2, MinPaths: 3},
			[]Outcome{fail("/a"), fail("/b"), fail("/b"), fail("/c")}, Open},
		{"disabled", Config{Disabled: true}, repeat(50, func(int) Outcome { return conn("/x") }), Closed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := New(tc.cfg, Options{})
			if refused := feed(b, tc.outcomes...); refused > 0 && tc.want != Open {
				t.Fatalf("%d calls refused", refused)
			}
			if got := b.Status().State; got != tc.want {
				t.Fatalf("state %s, want %s", got, tc.want)
			}
		})
	}
}

// Sporadic failures among successes never add up, however long it runs.
func TestSporadicFailuresStayClosed(t *testing.T) {
	b := New(Config{Failures: 2, MinPaths: 1}, Options{})
	for i := range 1000 {
		o := ok("/ok")
		if i%2 == 0 {
			o = fail(fmt.Sprint("/p", i))
		}
		if feed(b, o) != 0 {
			t.Fatalf("call %d refused", i)
		}
	}
	if st := b.Status(); st.State != Closed || st.Transitions[Open] != 0 {
		t.Fatalf("status %+v", st)
	}
}

// Half-open: one trial at a time, Successes of them close it, a failed
// trial reopens it; every transition is logged with its reason and
// reported.
func TestHalfOpenAndTransitions(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	var (
		mu      sync.Mutex
		changes []string
	)
	b := New(Config{Failures: 3, Successes: 2, Cooldown: Duration(5 * time.Millisecond)}, Options{
		Logger: zap.New(core).With(zap.String("upstream", "craft")),
		OnChange: func(from, to State, reason string) {
			mu.Lock()
			changes = append(changes, from.String()+">"+to.String())
			mu.Unlock()
		},
	})
	feed(b, fail("/a"), fail("/b"), fail("/c"))
	if b.Allow() || feed(b, ok("/d")) != 1 {
		t.Fatal("an open breaker let a call through")
	}
	waitHalfOpen(t, b)
	// Trials failing on fewer than min_paths (3) paths: one page's bug,
	// not the upstream's health; still half-open.
	feed(b, fail("/a"), fail("/a?q=1"), fail("/b"))
	if st := b.Status().State; st != HalfOpen {
		t.Fatalf("state %s after trials failed on 2 paths", st)
	}
	feed(b, fail("/c")) // the third path: open again
	if st := b.Status().State; st != Open {
		t.Fatalf("state %s after trials failed on 3 paths", st)
	}
	waitHalfOpen(t, b)

	// One trial at a time: while it runs, other calls are refused.
	inTrial, release := make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		done <- b.Run(func() Outcome { close(inTrial); <-release; return ok("/t") })
	}()
	<-inTrial
	if b.Allow() || b.Run(func() Outcome { t.Error("a second trial ran"); return ok("/x") }) != ErrOpen {
		t.Fatal("a second call got through during the trial")
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := b.Status().State; st != HalfOpen {
		t.Fatalf("state %s after 1 of 2 trial successes", st)
	}
	feed(b, ok("/t"))
	st := b.Status()
	if st.State != Closed || st.Transitions != [3]uint64{Closed: 1, HalfOpen: 2, Open: 2} {
		t.Fatalf("status %+v", st)
	}

	mu.Lock()
	got := strings.Join(changes, " ")
	mu.Unlock()
	if want := "closed>open open>half-open half-open>open open>half-open half-open>closed"; got != want {
		t.Fatalf("OnChange saw %q, want %q", got, want)
	}
	var logged []string
	for _, e := range logs.All() {
		f := e.ContextMap()
		if f["upstream"] != "craft" || f["state"] == nil {
			t.Fatalf("log entry %q lacks the upstream or state: %v", e.Message, f)
		}
		logged = append(logged, fmt.Sprintf("%s %s: %s", e.Level, f["state"], f["reason"]))
	}
	want := []string{
		"warn open: 3 consecutive failures over 3 distinct paths, last: status 500 on /c",
		"info half-open: cooldown of 5ms elapsed, letting a trial call through",
		"warn open: trial calls failed on 3 distinct paths, last: status 500 on /c",
		"info half-open: cooldown of 5ms elapsed, letting a trial call through",
		"info closed: 2 trial call(s) succeeded",
	}
	if strings.Join(logged, "\n") != strings.Join(want, "\n") {
		t.Fatalf("logged:\n%s\nwant:\n%s", strings.Join(logged, "\n"), strings.Join(want, "\n"))
	}
}

// Half-open follows the closed state's rule: a trial that is one broken
// page (always 500, always slow) never reopens the breaker, however often
// it is the trial, and does not count as a success either; a connection
// failure reopens it at once; with min_paths 1 any failed trial does.
func TestHalfOpenOneBrokenPageDoesNotReopen(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cfg    Config
		trials []Outcome
		want   State
	}{
		{"one broken page", Config{}, repeat(50, func(i int) Outcome { return fail(fmt.Sprintf("/broken?q=%d", i)) }), HalfOpen},
		{"then a success closes it", Config{}, append(repeat(5, func(int) Outcome { return fail("/broken") }), ok("/")), Closed},
		{"a broken page is not a success", Config{Successes: 2}, []Outcome{ok("/a"), fail("/broken"), fail("/broken")}, HalfOpen},
		{"spread failures reopen it", Config{}, []Outcome{fail("/a"), fail("/b"), fail("/a"), fail("/c")}, Open},
		{"a success resets the spread", Config{Successes: 3}, []Outcome{fail("/a"), fail("/b"), ok("/"), fail("/c"), fail("/d")}, HalfOpen},
		{"a connection failure reopens it", Config{}, []Outcome{fail("/broken"), conn("/broken")}, Open},
		{"min_paths 1", Config{MinPaths: 1}, []Outcome{fail("/broken")}, Open},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Failures, tc.cfg.Cooldown = 1, Duration(time.Millisecond)
			b := New(tc.cfg, Options{})
			feed(b, conn("/"))
			waitHalfOpen(t, b)
			for i, o := range tc.trials {
				if b.Run(func() Outcome { return o }) == ErrOpen {
					t.Fatalf("trial %d (%+v) refused", i, o)
				}
			}
			if st := b.Status().State; st != tc.want {
				t.Fatalf("state %s, want %s", st, tc.want)
			}
		})
	}
}

// Half-open, RunOn refuses a path whose trial failed since it half-opened
// (any query), without calling work; other paths still get the trials;
// once closed and half-open again, the path is tried again.
func TestHalfOpenRefusesAPathWhoseTrialFailed(t *testing.T) {
	b := New(Config{Failures: 1, Cooldown: Duration(time.Millisecond)}, Options{})
	feed(b, conn("/"))
	waitHalfOpen(t, b)
	if err := b.RunOn("/broken?q=1", func() Outcome { return fail("/broken?q=1") }); err != nil {
		t.Fatalf("first trial on /broken refused: %v", err)
	}
	called := false
	if err := b.RunOn("/broken?q=2", func() Outcome { called = true; return fail("/broken") }); err != ErrOpen || called {
		t.Fatalf("second call on /broken: err %v, called %v; want ErrOpen, not called", err, called)
	}
	if err := b.Run(func() Outcome { return fail("/broken") }); err != nil {
		t.Fatalf("Run (no path) refused: %v", err)
	}
	if err := b.RunOn("/other", func() Outcome { return ok("/other") }); err != nil {
		t.Fatalf("trial on another path refused: %v", err)
	}
	if st := b.Status().State; st != Closed {
		t.Fatalf("state %s after a successful trial, want closed", st)
	}
	feed(b, conn("/"))
	waitHalfOpen(t, b)
	if err := b.RunOn("/broken", func() Outcome { return ok("/broken") }); err != nil {
		t.Fatalf("/broken refused in a new half-open period: %v", err)
	}
}

func TestConfig(t *testing.T) {
	d := Config{}.WithDefaults()
	if d != (Config{Failures: 5, MinPaths: 3, Successes: 1, Cooldown: Duration(30 * time.Second)}) {
		t.Fatalf("defaults %+v", d)
	}
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Failures: -1}, "breaker failures must not be negative"},
		{Config{MinPaths: -2}, "breaker min_paths must not be negative"},
		{Config{Successes: 1 << 20}, "breaker successes must be at most"},
		{Config{Cooldown: -1}, "breaker cooldown must not be negative"},
	} {
		if err := c.cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.cfg, err, c.want)
		}
	}
	var cfg Config
	if err := json.Unmarshal([]byte(`{"failures":3,"min_paths":2,"cooldown":"1m30s"}`), &cfg); err != nil ||
		cfg != (Config{Failures: 3, MinPaths: 2, Cooldown: Duration(90 * time.Second)}) {
		t.Fatalf("JSON with a duration string: %+v, %v", cfg, err)
	}
	if err := json.Unmarshal([]byte(`{"cooldown":1000000000}`), &cfg); err != nil || cfg.Cooldown != Duration(time.Second) {
		t.Fatalf("JSON with nanoseconds: %+v, %v", cfg, err)
	}
	for _, bad := range []string{`{"cooldown":"soon"}`, `{"cooldown":true}`} {
		if err := json.Unmarshal([]byte(bad), &cfg); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}
