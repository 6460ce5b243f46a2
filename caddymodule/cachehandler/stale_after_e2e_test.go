package cachehandler

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/craftedge/craftedge/caddymodule"
	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
)

// slowOrigin holds its answers back while held: a request arriving then is
// announced on arrived and waits until release (or until the gateway gives
// up on it). Bodies name the path and the current version.
type slowOrigin struct {
	held        atomic.Bool
	version     atomic.Int64
	release     chan struct{}
	releaseOnce sync.Once
	arrived     chan string
	seen        map[string]int // arrivals read from arrived
}

// startWithStaleCopy starts a gateway with stale_after 20ms in front of
// one slow page, /a, stored (version 0) and then stale by a minute
// (within stale 1h); the origin then answers version 1, and holds its
// answers until released.
func startWithStaleCopy(t *testing.T) (*e2e.Gateway, *e2e.Origin, *slowOrigin) {
	t.Helper()
	o := e2e.NewOrigin(t)
	s := newSlowOrigin(t)
	o.Handle("/a", s.page(""))
	g := e2e.StartGateway(t, o, e2e.Options{HandlerExtra: "stale_after 20ms"})
	e2e.WantCacheStatus(t, g.Get("/a"), "craftedge; fwd=miss; stored")
	e2e.Advance(2 * time.Minute) // stale by 1m, within stale 1h
	s.version.Store(1)
	s.held.Store(true)
	return g, o, s
}

func newSlowOrigin(t *testing.T) *slowOrigin {
	s := &slowOrigin{release: make(chan struct{}), arrived: make(chan string, 64), seen: map[string]int{}}
	t.Cleanup(s.releaseAll)
	return s
}

func (s *slowOrigin) releaseAll() { s.releaseOnce.Do(func() { close(s.release) }) }

// page serves path's body with the tag named after the path and, when
// set, Cache-Control cc.
func (s *slowOrigin) page(cc string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.held.Load() {
			s.arrived <- r.URL.Path
			select {
			case <-s.release:
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Tag", strings.TrimPrefix(r.URL.Path, "/"))
		if cc != "" {
			w.Header().Set("Cache-Control", cc)
		}
		_, _ = fmt.Fprintf(w, "%s v%d", r.URL.Path, s.version.Load())
	}
}

// waitArrived waits until the origin has received a held request for path
// (readiness, not timing).
func (s *slowOrigin) waitArrived(t *testing.T, path string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for s.seen[path] == 0 {
		select {
		case p := <-s.arrived:
			s.seen[p]++
		case <-deadline:
			t.Fatalf("the origin never received %s", path)
		}
	}
	s.seen[path]--
}

// goGet sends a request in the background; its response comes on the
// returned channel.
func goGet(g *e2e.Gateway, path string, headers ...string) chan e2e.Response {
	ch := make(chan e2e.Response, 1)
	go func() { ch <- g.Get(path, headers...) }()
	return ch
}

// A copy past freshness and within stale answers when the origin has not
// within stale_after; the call goes on (one per key) and its response
// refreshes the copy.
func TestStaleAfterServesCopyThenRefreshes(t *testing.T) {
	g, o, s := startWithStaleCopy(t)
	// The counter is the process's: other tests' serves are in it.
	before := max(e2e.Scrape(g, `craftedge_cache_requests_total{outcome="stale_after",upstream="craft"}`), 0)

	// The origin holds every answer until released: only the copy can
	// answer these.
	for i := 0; i < 3; i++ {
		r := g.Get("/a")
		e2e.WantCacheStatus(t, r, statusStaleAfter)
		if r.Body != "/a v0" || r.Header.Get("Age") != "120" {
			t.Fatalf("stale-after serve: body %q, Age %q", r.Body, r.Header.Get("Age"))
		}
	}
	s.waitArrived(t, "/a")
	if got := o.Count("/a"); got != 2 {
		t.Fatalf("origin saw %d requests for /a, want 2 (one background call for three requests)", got)
	}
	if got := e2e.Scrape(g, `craftedge_cache_requests_total{outcome="stale_after",upstream="craft"}`) - before; got != 3 {
		t.Fatalf("stale_after outcome counted %v times, want 3", got)
	}

	s.held.Store(false)
	s.releaseAll()
	e2e.WaitFor(t, "the background call to refresh the copy", func() bool {
		r := g.Get("/a")
		return r.Header.Get("Cache-Status") == statusHit && r.Body == "/a v1"
	})
	if got := o.Count("/a"); got != 2 {
		t.Fatalf("origin saw %d requests for /a, want 2", got)
	}
}

// Requests that must not be answered with a copy wait for the origin while
// a request that may be is answered after stale_after: a copy past its
// stale window, a hard-purged copy, a private response (never stored) and a
// visitor with a session (bypass). /marker's stale-after answer comes after
// theirs would have (their calls began first, with the same stale_after).
func TestStaleAfterNeverServesWhatItMustNot(t *testing.T) {
	o := e2e.NewOrigin(t)
	s := newSlowOrigin(t)
	for _, p := range []string{"/old", "/purged", "/session", "/marker"} {
		o.Handle(p, s.page(""))
	}
	o.Handle("/private", s.page("private, max-age=60"))
	g := e2e.StartGateway(t, o, e2e.Options{HandlerExtra: "stale_after 20ms"})

	e2e.WantCacheStatus(t, g.Get("/old"), "craftedge; fwd=miss; stored")
	e2e.Advance(62 * time.Minute) // /old: stale by 61m, past stale 1h
	for _, p := range []string{"/purged", "/session", "/marker"} {
		e2e.WantCacheStatus(t, g.Get(p), "craftedge; fwd=miss; stored")
	}
	e2e.WantCacheStatusPrefix(t, g.Get("/private"), "craftedge; fwd=miss; detail=")
	e2e.Advance(2 * time.Minute) // the others: stale by 1m
	e2e.Purge(g, `{"tags":["purged"],"mode":"hard"}`)
	s.version.Store(1)
	s.held.Store(true)

	waiting := map[string]chan e2e.Response{}
	for _, tc := range []struct {
		path    string
		headers []string
	}{
		{"/old", nil},
		{"/purged", nil},
		{"/private", nil},
		{"/session", []string{"Cookie", "CraftSessionId=abc"}},
	} {
		waiting[tc.path] = goGet(g, tc.path, tc.headers...)
		s.waitArrived(t, tc.path)
	}
	e2e.WantCacheStatus(t, g.Get("/marker"), statusStaleAfter)
	for p, ch := range waiting {
		select {
		case r := <-ch:
			t.Fatalf("%s answered before the origin did: %q %q", p, r.Header.Get("Cache-Status"), r.Body)
		default:
		}
	}
	s.releaseAll()
	for p, want := range map[string]string{
		"/old":     "craftedge; fwd=stale; stored",
		"/purged":  "craftedge; fwd=miss; stored",
		"/private": "craftedge; fwd=miss; detail=",
		"/session": "craftedge; fwd=bypass; detail=session",
	} {
		r := <-waiting[p]
		if !strings.HasPrefix(r.Header.Get("Cache-Status"), want) {
			t.Fatalf("%s: Cache-Status %q, want %q", p, r.Header.Get("Cache-Status"), want)
		}
		if r.Body != p+" v1" {
			t.Fatalf("%s: body %q, want the origin's new answer", p, r.Body)
		}
	}
}

// The breaker learns of a slow upstream though visitors got copies: the
// background calls time out and count as failures.
func TestStaleAfterBreakerLearnsOfSlowness(t *testing.T) {
	o := e2e.NewOrigin(t)
	s := newSlowOrigin(t)
	paths := []string{"/s1", "/s2", "/s3"}
	for _, p := range paths {
		o.Handle(p, s.page(""))
	}
	g := e2e.StartGateway(t, o, e2e.Options{HandlerExtra: "stale_after 10ms\ntimeout 200ms"})
	for _, p := range paths {
		e2e.WantCacheStatus(t, g.Get(p), "craftedge; fwd=miss; stored")
	}
	e2e.Advance(2 * time.Minute)
	s.held.Store(true) // never released: every call times out
	for _, p := range paths {
		e2e.WantCacheStatus(t, g.Get(p), statusStaleAfter)
	}
	e2e.WaitFor(t, "the breaker to open on the background calls' timeouts", func() bool {
		return e2e.BreakerState(g, "craft") == "open"
	})
	// Open: copies are served without calling the upstream.
	e2e.WantCacheStatusPrefix(t, g.Get("/s1"), "craftedge; hit; detail=stale")
}

// stale_after in the Caddyfile: a duration, 0 or off (never), nothing
// negative, shorter than timeout.
func TestStaleAfterOption(t *testing.T) {
	o := e2e.NewOrigin(t)
	for _, tc := range []struct{ extra, want string }{
		{"stale_after 0", `"stale_after":0`},
		{"stale_after off", `"stale_after":0`},
		{"stale_after 250ms", `"stale_after":250000000`},
	} {
		cfg := e2e.CaddyfileFor(o, e2e.Options{Storage: filepath.Join(t.TempDir(), "x.db"), HandlerExtra: tc.extra})
		if js := string(e2e.Adapt(t, cfg)); !strings.Contains(js, tc.want) {
			t.Fatalf("%s: JSON lacks %s: %s", tc.extra, tc.want, js)
		}
	}
	for _, tc := range []struct{ extra, want string }{
		{"stale_after", "stale_after needs a duration or off"},
		{"stale_after -1s", "stale_after must not be negative"},
		{"stale_after 2s", "stale_after (2s) must be shorter than timeout (2s)"},
		{"stale_after 1s 2s", "too many arguments"},
	} {
		cfg := e2e.CaddyfileFor(o, e2e.Options{Storage: filepath.Join(t.TempDir(), "x.db"), HandlerExtra: tc.extra})
		e2e.AssertLoadError(t, cfg, tc.want)
	}
}

// A snapshot promoted into memory answers a slow upstream like a stale
// copy, labelled as the snapshot it is; one whose snapshot a purge had
// marked stale never does (it serves only when the upstream fails).
func TestStaleAfterPromotedSnapshots(t *testing.T) {
	o := e2e.NewOrigin(t)
	s, failing := failingSlowOrigin(t, o, "/kept", "/purged")
	g := startWithSnapshotsOnly(t, o, "/kept", "/purged")
	e2e.Purge(g, `{"tags":["purged"]}`)
	failing.Store(true)
	for _, p := range []string{"/kept", "/purged"} {
		// Served from the snapshot, and promoted into memory.
		e2e.WantCacheStatus(t, g.Get(p), "craftedge; fwd=miss; fwd-status=500; detail=snapshot")
	}
	failing.Store(false)
	s.version.Store(1)
	s.held.Store(true)

	purged := goGet(g, "/purged")
	s.waitArrived(t, "/purged")
	r := g.Get("/kept")
	e2e.WantCacheStatus(t, r, statusStaleAfterSnapshot)
	if r.Body != "/kept v0" {
		t.Fatalf("promoted snapshot served stale-after: body %q", r.Body)
	}
	select {
	case r := <-purged:
		t.Fatalf("the purged snapshot answered before the origin did: %q", r.Header.Get("Cache-Status"))
	default:
	}
	s.releaseAll()
	if r := <-purged; r.Body != "/purged v1" || !strings.HasPrefix(r.Header.Get("Cache-Status"), "craftedge; fwd=stale; stored") {
		t.Fatalf("purged page after the origin answered: %q %q", r.Header.Get("Cache-Status"), r.Body)
	}
}

// failingSlowOrigin is a slowOrigin whose pages answer 500 while failing.
func failingSlowOrigin(t *testing.T, o *e2e.Origin, paths ...string) (*slowOrigin, *atomic.Bool) {
	s := newSlowOrigin(t)
	failing := new(atomic.Bool)
	for _, p := range paths {
		page := s.page("")
		o.Handle(p, func(w http.ResponseWriter, r *http.Request) {
			if failing.Load() {
				http.Error(w, "down", http.StatusInternalServerError)
				return
			}
			page(w, r)
		})
	}
	return s, failing
}

// startWithSnapshotsOnly starts a gateway (stale_after 20ms, no warm
// start) that stores paths, then restarts it: their snapshots are kept,
// the memory tier is empty.
func startWithSnapshotsOnly(t *testing.T, o *e2e.Origin, paths ...string) *e2e.Gateway {
	t.Helper()
	cold := e2e.Options{GlobalExtra: "warm_start off", HandlerExtra: "stale_after 20ms"}
	g := e2e.StartGateway(t, o, cold)
	for _, p := range paths {
		e2e.WantCacheStatus(t, g.Get(p), "craftedge; fwd=miss; stored")
	}
	g.FlushSnapshots()
	g.Restart(cold)
	return g
}

// promotedSnapshotsStayPurged sends requests for paths while the origin
// holds its answers, and checks that none of them is answered before the
// origin is: /marker (a plain stale copy, whose call began after theirs)
// is answered after stale_after first. Then they get the origin's answer.
func promotedSnapshotsStayPurged(t *testing.T, g *e2e.Gateway, s *slowOrigin, paths ...string) {
	t.Helper()
	s.version.Store(1)
	s.held.Store(true)
	waiting := map[string]chan e2e.Response{}
	for _, p := range paths {
		waiting[p] = goGet(g, p)
		s.waitArrived(t, p)
	}
	e2e.WantCacheStatus(t, g.Get("/marker"), statusStaleAfter)
	for p, ch := range waiting {
		wantWaiting(t, p+" (a purged snapshot promoted into memory)", ch)
	}
	s.releaseAll()
	for p, ch := range waiting {
		if r := <-ch; r.Body != p+" v1" {
			t.Fatalf("%s after the origin answered: %q %q", p, r.Header.Get("Cache-Status"), r.Body)
		}
	}
}

// A snapshot promoted into memory while a purge runs is a purged one, never
// served in place of a slow upstream: promoted between the purge's two
// steps (its snapshots marked, its memory copies purged), soft or hard.
func TestStaleAfterSnapshotPromotedDuringPurge(t *testing.T) {
	o := e2e.NewOrigin(t)
	s, failing := failingSlowOrigin(t, o, "/soft", "/hard", "/marker")
	g := startWithSnapshotsOnly(t, o, "/soft", "/hard")
	e2e.WantCacheStatus(t, g.Get("/marker"), "craftedge; fwd=miss; stored")

	for _, mode := range []string{"soft", "hard"} {
		promoted := false
		caddymodule.OnPurgeStep(func() {
			if promoted {
				return
			}
			promoted = true
			failing.Store(true)
			e2e.WantCacheStatus(t, g.Get("/"+mode), "craftedge; fwd=miss; fwd-status=500; detail=snapshot")
			failing.Store(false)
		})
		t.Cleanup(func() { caddymodule.OnPurgeStep(nil) })
		e2e.Purge(g, fmt.Sprintf(`{"tags":[%q],"mode":%q}`, mode, mode))
		caddymodule.OnPurgeStep(nil)
		if !promoted {
			t.Fatalf("%s purge: no step between marking snapshots and purging memory", mode)
		}
	}
	e2e.Advance(2 * time.Minute) // /marker: stale by 1m, within stale 1h
	promotedSnapshotsStayPurged(t, g, s, "/soft", "/hard")
}

// A snapshot read before a purge marked it and promoted after the purge is
// a purged one too (the memory tier sees the purge's epoch), and so is a
// promoted snapshot a soft purge marks later: neither is served in place
// of a slow upstream.
func TestStaleAfterSnapshotPurgedAroundPromotion(t *testing.T) {
	o := e2e.NewOrigin(t)
	s, failing := failingSlowOrigin(t, o, "/during", "/after", "/marker")
	g := startWithSnapshotsOnly(t, o, "/during", "/after")
	e2e.WantCacheStatus(t, g.Get("/marker"), "craftedge; fwd=miss; stored")

	// /during: purged (hard) after its snapshot's marks were read, before
	// it is promoted.
	purged := false
	setHook(t, &promoteHook, func(key string) {
		if !purged && strings.HasSuffix(key, "/during") {
			purged = true
			e2e.Purge(g, `{"tags":["during"],"mode":"hard"}`)
		}
	})
	failing.Store(true)
	for _, p := range []string{"/during", "/after"} {
		e2e.WantCacheStatus(t, g.Get(p), "craftedge; fwd=miss; fwd-status=500; detail=snapshot")
	}
	failing.Store(false)
	if !purged {
		t.Fatal("/during was not promoted")
	}
	// /after: promoted, then soft-purged.
	e2e.Purge(g, `{"tags":["after"]}`)
	e2e.Advance(2 * time.Minute)
	promotedSnapshotsStayPurged(t, g, s, "/during", "/after")
}
