package esi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	kgzip "github.com/klauspost/compress/gzip"
)

// site answers fragment fetches from a table: a path's fragment, or an
// error; gates hold a fetch until the test releases it.
type site struct {
	mu      sync.Mutex
	frags   map[string]Fragment
	errs    map[string]error
	stale   map[string]Fragment
	gates   map[string]chan struct{}
	started map[string]chan struct{}
	fetched []string
}

func newSite() *site {
	return &site{frags: map[string]Fragment{}, errs: map[string]error{}, stale: map[string]Fragment{},
		gates: map[string]chan struct{}{}, started: map[string]chan struct{}{}}
}

// page adds an ESI fragment parsed from body.
func (s *site) page(t testing.TB, path, body string, o Outcome) {
	t.Helper()
	s.frags[path] = Fragment{Body: []byte(body), Template: parsePage(t, body), Outcome: o}
}

// gate makes the fetch of path wait for release; started is closed when
// the fetch begins.
func (s *site) gate(path string) (started, release chan struct{}) {
	s.gates[path] = make(chan struct{})
	s.started[path] = make(chan struct{})
	return s.started[path], s.gates[path]
}

func (s *site) sources() Sources {
	return Sources{
		Fetch: func(ctx context.Context, path string, depth int) (Fragment, error) {
			s.mu.Lock()
			s.fetched = append(s.fetched, path)
			gate, started := s.gates[path], s.started[path]
			f, ok := s.frags[path]
			err := s.errs[path]
			s.mu.Unlock()
			if started != nil {
				close(started)
			}
			if gate != nil {
				select {
				case <-gate:
				case <-ctx.Done():
					return Fragment{}, ctx.Err()
				}
			}
			if err != nil {
				return Fragment{}, err
			}
			if !ok {
				return Fragment{}, fmt.Errorf("%s: 404", path)
			}
			return f, nil
		},
		Stale: func(path string, depth int) (Fragment, bool) {
			s.mu.Lock()
			defer s.mu.Unlock()
			f, ok := s.stale[path]
			return f, ok
		},
	}
}

func parsePage(t testing.TB, body string) *Template {
	t.Helper()
	tmpl, err := Parse([]byte(body), testPolicy, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if err := tmpl.Compress([]byte(body)); err != nil {
		t.Fatal(err)
	}
	return tmpl
}

// assemble runs NewAssembly, Prepare(wait) and Write(identity).
func assemble(t testing.TB, page string, src Sources, lim Limits, wait Wait) (string, Head, []Report, error) {
	t.Helper()
	a, err := NewAssembly(context.Background(), parsePage(t, page), []byte(page), src, lim)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	h, err := a.Prepare(wait)
	if err != nil {
		return "", h, a.Reports(), err
	}
	var out bytes.Buffer
	_, err = a.Write(&out, CodingIdentity)
	return out.String(), h, a.Reports(), err
}

func summary(rs []Report) string {
	var s []string
	for _, r := range rs {
		s = append(s, r.String())
	}
	return strings.Join(s, ", ")
}

func TestAssembleCodings(t *testing.T) {
	s := newSite()
	s.page(t, "/nav", "<nav>menu</nav>", OutcomeHit)
	s.frags["/hello"] = Fragment{Body: []byte("hello, visitor"), Outcome: OutcomeMiss} // no template: compressed per request
	page := `<html><esi:include src="/nav"/><main>` + strings.Repeat("text ", 100) + `</main><esi:include src="/hello"/></html>`
	want := "<html><nav>menu</nav><main>" + strings.Repeat("text ", 100) + "</main>hello, visitor</html>"
	for _, coding := range []string{CodingIdentity, CodingGzip, CodingZstd} {
		a, err := NewAssembly(context.Background(), parsePage(t, page), []byte(page), s.sources(), DefaultLimits())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Prepare(WaitAll); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		n, err := a.Write(&out, coding)
		a.Close()
		if err != nil {
			t.Fatal(err)
		}
		if n != int64(len(want)) {
			t.Errorf("%q: n=%d, want %d", coding, n, len(want))
		}
		var got []byte
		switch coding {
		case CodingIdentity:
			got = out.Bytes()
		case CodingGzip:
			zr, err := kgzip.NewReader(&out)
			if err != nil {
				t.Fatal(err)
			}
			zr.Multistream(false)
			got, err = io.ReadAll(zr)
			if err != nil {
				t.Fatal(err)
			}
		case CodingZstd:
			got, err = zstdDecoderForTest.DecodeAll(out.Bytes(), nil)
			if err != nil {
				t.Fatal(err)
			}
		}
		if string(got) != want {
			t.Errorf("%q: got %q", coding, got)
		}
		if got := summary(a.Reports()); got != "/nav; hit, /hello; miss" {
			t.Errorf("reports %q", got)
		}
	}
}

// TestAssembleParallel: the second include's fetch starts while the first
// is still pending.
func TestAssembleParallel(t *testing.T) {
	s := newSite()
	s.page(t, "/a", "A", OutcomeHit)
	s.page(t, "/b", "B", OutcomeHit)
	_, releaseA := s.gate("/a")
	startedB, releaseB := s.gate("/b")
	go func() {
		<-startedB // /b began while /a is held
		close(releaseA)
		close(releaseB)
	}()
	out, _, _, err := assemble(t, `<esi:include src="/a"/>-<esi:include src="/b"/>`, s.sources(), DefaultLimits(), WaitAll)
	if err != nil || out != "A-B" {
		t.Fatalf("%q, %v", out, err)
	}
}

// flushRecorder records what was written when Flush was called.
type flushRecorder struct {
	bytes.Buffer
	flushed chan string
}

func (f *flushRecorder) Flush() { f.flushed <- f.String() }

// TestAssembleStreams: the static part before a pending fragment is
// flushed to the client before the fragment arrives.
func TestAssembleStreams(t *testing.T) {
	s := newSite()
	s.page(t, "/slow", "SLOW", OutcomeMiss)
	_, release := s.gate("/slow")
	s.sources()
	src := s.sources()
	src.MaybePrivate = func(string) bool { return false }
	page := `<head>early</head><esi:include src="/slow"/><tail>`
	a, err := NewAssembly(context.Background(), parsePage(t, page), []byte(page), src, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	h, err := a.Prepare(WaitPrivate)
	if err != nil || !h.Pending {
		t.Fatalf("Prepare: %+v %v", h, err)
	}
	w := &flushRecorder{flushed: make(chan string, 1)}
	done := make(chan error)
	go func() { _, err := a.Write(w, CodingIdentity); done <- err }()
	if got := <-w.flushed; got != "<head>early</head>" {
		t.Fatalf("flushed %q before the fragment", got)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if w.String() != "<head>early</head>SLOW<tail>" {
		t.Fatalf("got %q", w.String())
	}
}

func TestAssembleFailureOrder(t *testing.T) {
	boom := errors.New("upstream 503")
	for _, c := range []struct {
		name     string
		setup    func(s *site)
		include  string
		want     string
		reports  string
		wantErr  bool
		firstErr bool
	}{
		{"alt", func(s *site) {
			s.errs["/f"] = boom
			s.page(t, "/alt", "ALT", OutcomeHit)
		}, `<esi:include src="/f" alt="/alt"/>`, "[ALT]", "/f; alt=hit", false, true},
		{"stale after alt", func(s *site) {
			s.errs["/f"], s.errs["/alt"] = boom, boom
			s.stale["/f"] = Fragment{Body: []byte("OLD")}
		}, `<esi:include src="/f" alt="/alt"/>`, "[OLD]", "/f; stale", false, true},
		{"alt's stale", func(s *site) {
			s.errs["/f"], s.errs["/alt"] = boom, boom
			s.stale["/alt"] = Fragment{Body: []byte("OLDALT")}
		}, `<esi:include src="/f" alt="/alt"/>`, "[OLDALT]", "/f; stale", false, true},
		{"stale never private", func(s *site) {
			s.errs["/f"] = boom
			s.stale["/f"] = Fragment{Body: []byte("SOMEONE ELSE'S"), Private: true}
		}, `<esi:include src="/f" onerror="continue"/>`, "[]", "/f; failed", false, true},
		{"continue", func(s *site) { s.errs["/f"] = boom },
			`<esi:include src="/f" onerror="continue"/>`, "[]", "/f; failed", false, true},
		{"page error", func(s *site) { s.errs["/f"] = boom },
			`<esi:include src="/f"/>`, "", "/f; failed", true, true},
		{"bad fragment template", func(s *site) {
			s.frags["/f"] = Fragment{Body: []byte("abc"), Template: Static([]byte("abcd"))}
		}, `<esi:include src="/f" onerror="continue"/>`, "[]", "/f; failed", false, true},
	} {
		s := newSite()
		c.setup(s)
		out, _, rs, err := assemble(t, "["+c.include+"]", s.sources(), DefaultLimits(), WaitAll)
		if c.wantErr != (err != nil) || c.wantErr && !errors.Is(err, ErrFragment) {
			t.Errorf("%s: err %v", c.name, err)
			continue
		}
		if !c.wantErr && out != c.want {
			t.Errorf("%s: got %q, want %q", c.name, out, c.want)
		}
		if got := summary(rs); got != c.reports {
			t.Errorf("%s: reports %q, want %q", c.name, got, c.reports)
		}
		if c.firstErr && rs[0].Err == nil {
			t.Errorf("%s: report without the src's error", c.name)
		}
	}
}

// TestAssemblePageErrorAfterHeaders: an include without onerror that fails
// while streaming makes Write fail (the caller aborts the response).
func TestAssemblePageErrorAfterHeaders(t *testing.T) {
	s := newSite()
	s.errs["/f"] = errors.New("boom")
	_, release := s.gate("/f")
	src := s.sources()
	src.MaybePrivate = func(string) bool { return false }
	page := `a<esi:include src="/f"/>b`
	a, _ := NewAssembly(context.Background(), parsePage(t, page), []byte(page), src, DefaultLimits())
	defer a.Close()
	if _, err := a.Prepare(WaitPrivate); err != nil {
		t.Fatal(err)
	}
	close(release)
	var out bytes.Buffer
	if _, err := a.Write(&out, CodingIdentity); !errors.Is(err, ErrFragment) {
		t.Fatalf("Write: %v", err)
	}
	if out.String() != "a" {
		t.Fatalf("wrote %q", out.String())
	}
}

func TestAssembleNestingAndLimits(t *testing.T) {
	s := newSite()
	s.page(t, "/outer", `(<esi:include src="/inner"/>)`, OutcomeHit)
	s.page(t, "/inner", `<esi:include src="/leaf"/>`, OutcomeHit)
	s.page(t, "/leaf", `leaf`, OutcomeMiss)
	s.page(t, "/loop", `L<esi:include src="/loop" onerror="continue"/>`, OutcomeHit)

	out, _, rs, err := assemble(t, `<esi:include src="/outer"/>`, s.sources(), DefaultLimits(), WaitAll)
	if err != nil || out != "(leaf)" {
		t.Fatalf("nested: %q %v", out, err)
	}
	if got := summary(rs); got != "/outer; hit, /inner; hit, /leaf; miss" || rs[2].Depth != 3 {
		t.Errorf("nested reports %q (depth %d)", got, rs[2].Depth)
	}

	lim := DefaultLimits()
	lim.MaxDepth = 2
	if _, _, rs, err := assemble(t, `<esi:include src="/outer"/>`, s.sources(), lim, WaitAll); !errors.Is(err, ErrFragment) || !errors.Is(rs[2].Err, ErrTooDeep) {
		t.Errorf("depth limit: %v, reports %v", err, rs)
	}
	out, _, rs, err = assemble(t, `<esi:include src="/loop"/>`, s.sources(), DefaultLimits(), WaitAll)
	if err != nil || out != "LLL" || len(rs) != 4 || !errors.Is(rs[3].Err, ErrTooDeep) {
		t.Errorf("self-include: %q %v %v", out, err, rs)
	}

	lim = DefaultLimits()
	lim.MaxFetches = 2
	page := `<esi:include src="/leaf" onerror="continue"/><esi:include src="/leaf" onerror="continue"/><esi:include src="/leaf" onerror="continue"/>`
	out, _, rs, err = assemble(t, page, s.sources(), lim, WaitAll)
	if err != nil || out != "leafleaf" {
		t.Errorf("fetch limit: %q %v", out, err)
	}
	// With Lookup, an include found in memory counts once, not twice.
	src := s.sources()
	src.Lookup = func(path string, depth int) (Fragment, bool) { return Fragment{}, false }
	out, _, _, err = assemble(t, page, src, lim, WaitAll)
	if err != nil || out != "leafleaf" {
		t.Errorf("fetch limit with Lookup: %q %v", out, err)
	}
	failed := 0
	for _, r := range rs {
		if r.Outcome == OutcomeFailed && errors.Is(r.Err, ErrTooManyFetches) {
			failed++
		}
	}
	if failed != 1 {
		t.Errorf("fetch limit: reports %v", rs)
	}
}

// TestAssemblePrivate: a private fragment is resolved before the headers:
// its Set-Cookie is returned and the response marked private.
func TestAssemblePrivate(t *testing.T) {
	s := newSite()
	s.page(t, "/nav", "NAV", OutcomeHit)
	hdr := http.Header{}
	hdr.Add("Set-Cookie", "CRAFT_CSRF_TOKEN=abc; Path=/; HttpOnly")
	s.frags["/_fragments/csrf"] = Fragment{Body: []byte(`<input name="CRAFT_CSRF_TOKEN" value="m">`), Private: true, Header: hdr}
	src := s.sources()
	src.MaybePrivate = func(p string) bool { return strings.HasPrefix(p, "/_fragments/") }
	out, h, rs, err := assemble(t, `<esi:include src="/nav"/><form><esi:include src="/_fragments/csrf"/></form>`, src, DefaultLimits(), WaitPrivate)
	if err != nil {
		t.Fatal(err)
	}
	if !h.Private || len(h.SetCookie) != 1 || !strings.HasPrefix(h.SetCookie[0], "CRAFT_CSRF_TOKEN=abc") {
		t.Fatalf("head %+v", h)
	}
	if out != `NAV<form><input name="CRAFT_CSRF_TOKEN" value="m"></form>` {
		t.Fatalf("got %q", out)
	}
	if got := summary(rs); got != "/nav; hit, /_fragments/csrf; miss; private" {
		t.Errorf("reports %q", got)
	}
}

// TestAssembleNestedPrivate: a private fragment inside a cached public one
// is resolved before the headers too, and marks the response private.
func TestAssembleNestedPrivate(t *testing.T) {
	s := newSite()
	s.page(t, "/box", `[<esi:include src="/who"/>]`, OutcomeHit)
	hdr := http.Header{"Set-Cookie": {"seen=1"}}
	s.frags["/who"] = Fragment{Body: []byte("hello, visitor"), Private: true, Header: hdr}
	out, h, rs, err := assemble(t, `<esi:include src="/box"/>`, s.sources(), DefaultLimits(), WaitPrivate)
	if err != nil || out != "[hello, visitor]" {
		t.Fatalf("%q %v", out, err)
	}
	if !h.Private || len(h.SetCookie) != 1 || h.Pending {
		t.Fatalf("head %+v", h)
	}
	if got := summary(rs); got != "/box; hit, /who; miss; private" {
		t.Errorf("reports %q", got)
	}
}

// TestAssembleLatePrivate: a fragment that answers private after the
// headers went out (as shareable) is not written.
func TestAssembleLatePrivate(t *testing.T) {
	s := newSite()
	s.frags["/p"] = Fragment{Body: []byte("MINE"), Private: true}
	_, release := s.gate("/p")
	src := s.sources()
	src.MaybePrivate = func(string) bool { return false }
	page := `a<esi:include src="/p" onerror="continue"/>b`
	a, _ := NewAssembly(context.Background(), parsePage(t, page), []byte(page), src, DefaultLimits())
	defer a.Close()
	h, err := a.Prepare(WaitPrivate)
	if err != nil || h.Private {
		t.Fatalf("%+v %v", h, err)
	}
	close(release)
	var out bytes.Buffer
	if _, err := a.Write(&out, CodingIdentity); err != nil {
		t.Fatal(err)
	}
	if out.String() != "ab" {
		t.Fatalf("late private fragment written: %q", out.String())
	}
	if rs := a.Reports(); !errors.Is(rs[0].Err, ErrLatePrivate) {
		t.Fatalf("reports %v", rs)
	}
}

// TestAssembleBudget: when the time budget runs out, a fetch that ignores
// its context does not hold the page: the stale copy is served.
func TestAssembleBudget(t *testing.T) {
	stuck := make(chan struct{})
	defer close(stuck)
	src := Sources{
		Fetch: func(ctx context.Context, path string, depth int) (Fragment, error) {
			<-stuck // ignores ctx
			return Fragment{}, errors.New("late")
		},
		Stale: func(path string, depth int) (Fragment, bool) { return Fragment{Body: []byte("OLD")}, true },
	}
	ctx, cancel := context.WithCancel(context.Background())
	page := `a<esi:include src="/f"/>b`
	a, _ := NewAssembly(ctx, parsePage(t, page), []byte(page), src, DefaultLimits())
	defer a.Close()
	cancel() // the budget is spent
	if _, err := a.Prepare(WaitAll); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := a.Write(&out, CodingIdentity); err != nil || out.String() != "aOLDb" {
		t.Fatalf("%q %v", out.String(), err)
	}
	if rs := a.Reports(); rs[0].Outcome != OutcomeStale || !errors.Is(rs[0].Err, context.Canceled) {
		t.Fatalf("reports %v", rs)
	}
}

func TestAssembleMisuse(t *testing.T) {
	page := []byte("abc")
	if _, err := NewAssembly(context.Background(), Static([]byte("abcd")), page, newSite().sources(), DefaultLimits()); !errors.Is(err, ErrBodyMismatch) {
		t.Errorf("body mismatch: %v", err)
	}
	if _, err := NewAssembly(context.Background(), Static(page), page, Sources{}, DefaultLimits()); err == nil {
		t.Error("nil Fetch accepted")
	}
	a, _ := NewAssembly(context.Background(), Static(page), page, newSite().sources(), DefaultLimits())
	if _, err := a.Write(io.Discard, CodingIdentity); !errors.Is(err, ErrNotPrepared) {
		t.Errorf("Write before Prepare: %v", err)
	}
	a.Prepare(WaitAll)
	if _, err := a.Write(io.Discard, "br"); err == nil {
		t.Error("unknown coding accepted")
	}
}

func TestCacheStatus(t *testing.T) {
	got := CacheStatus("craftedge-esi", []Report{
		{Src: "/nav", Outcome: OutcomeHit},
		{Src: "/csrf", Outcome: OutcomeMiss, Private: true},
		{Src: "/f", Outcome: OutcomeAlt, AltOutcome: OutcomeHit},
		{Src: "/old", Outcome: OutcomeStale},
		{Src: `/q?a="b"`, Outcome: OutcomeFailed},
	})
	want := []string{
		`craftedge-esi; hit; key="/nav"`,
		`craftedge-esi; fwd=miss; key="/csrf"; detail=private`,
		`craftedge-esi; fwd=miss; key="/f"; detail=alt-hit`,
		`craftedge-esi; hit; key="/old"; detail=stale`,
		`craftedge-esi; key="/q?a=\"b\""; detail=failed`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestFetchAfterClose: a fetch that starts after Close (here the alt of
// an include whose src failed once the page was done) gets a cancelled
// context, never a nil one, and the include falls back as usual.
func TestFetchAfterClose(t *testing.T) {
	release := make(chan struct{})
	stale := make(chan string, 2)
	src := Sources{
		Fetch: func(ctx context.Context, path string, _ int) (Fragment, error) {
			if path == "/a" {
				<-release
				return Fragment{}, errors.New("src failed")
			}
			return Fragment{}, ctx.Err()
		},
		Stale: func(path string, _ int) (Fragment, bool) {
			stale <- path
			return Fragment{}, false
		},
	}
	page := `<esi:include src="/a" alt="/b" onerror="continue"/>`
	a, err := NewAssembly(context.Background(), parsePage(t, page), []byte(page), src, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	close(release)
	if p := <-stale; p != "/a" {
		t.Fatalf("fell back to %q first, want /a", p)
	}
	if a.runCtx().Err() == nil {
		t.Fatal("the context after Close is not cancelled")
	}
}
