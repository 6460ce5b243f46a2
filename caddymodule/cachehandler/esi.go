package cachehandler

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"

	"github.com/craftedge/craftedge/esi"
	"github.com/craftedge/craftedge/httpcache"
	"github.com/craftedge/craftedge/pagecache"
)

// This file glues the Caddy-free esi tier into the handler (issue 19): a
// page whose upstream opted in is compiled into a template when it is
// stored, and assembled from its stored segments and its fragments (each a
// cache entry of its own, see esi_fetch.go) on every hit.

// ESIConfig enables edge-side includes for the pages of this handler and
// sets their limits. ESI is processed only in responses whose upstream
// opted in with Surrogate-Control: content="ESI/1.0"; the upstream is told
// that craftedge assembles ESI by Surrogate-Capability: craftedge="ESI/1.0"
// on every cacheable request (a constant: it does not change the key).
type ESIConfig struct {
	// MaxDepth is how deep includes nest (the page's includes are at
	// depth 1). Absent: 3. Zero refuses every include when assembling.
	MaxDepth *int `json:"max_depth,omitempty"`

	// MaxIncludes is the most <esi:include> tags one page or fragment may
	// hold; a body with more is not stored as a template. Absent: 32.
	MaxIncludes *int `json:"max_includes,omitempty"`

	// MaxFetches is the most fragments one assembled response uses, over
	// every depth (an alt counts). Absent: 64.
	MaxFetches *int `json:"max_fetches,omitempty"`

	// TimeBudget bounds the time one assembled response waits for its
	// fragments; a fragment not had by then gets its stale copy, else is
	// left out (onerror="continue") or fails the page. Default 2s; zero
	// has no meaning, so 0 (or absent) in JSON is the default.
	TimeBudget caddy.Duration `json:"time_budget,omitempty"`

	// PrivatePlaceholder is written in place of a private fragment while
	// the kill switch is on (private fragments are never stored, and the
	// upstream is not called). Default: nothing.
	PrivatePlaceholder string `json:"private_placeholder,omitempty"`

	// PrivatePaths are include paths (path and query, as written in src)
	// known to be private: a prefix when ending in "*", else exact. Their
	// fetches carry the visitor's cookies from the first request on.
	// Fragments answering private or no-store are learnt as private
	// anyway (their first, cookie-less fetch is discarded).
	PrivatePaths []string `json:"private_paths,omitempty"`
}

// Defaults of ESIConfig.
const (
	defaultESIBudget = 2 * time.Second
	// maxKnownFragments bounds the paths whose privacy is remembered.
	maxKnownFragments = 10000
	// maxTemplateCacheBytes bounds the decoded templates kept per handler.
	maxTemplateCacheBytes = 8 << 20
	// esiCacheStatusName names the fragments' Cache-Status members.
	esiCacheStatusName = "craftedge-esi"
	// surrogateCapability is sent upstream on cacheable requests.
	surrogateCapability = `craftedge="ESI/1.0"`
)

// reservedESIPrefixes are paths no include may reach whatever the site's
// routes: craftedge's own handlers and the vendor proxy. The control
// panel, actions and tokens are refused through the bypass rules.
var reservedESIPrefixes = []string{"/craftedge/", "/vendors/", "/.well-known/"}

// esiState is a provisioned ESIConfig.
type esiState struct {
	limits      esi.Limits
	budget      time.Duration
	placeholder []byte
	// private are PrivatePaths: exact, or prefixes (the "*" dropped)
	// when prefix[i].
	private []string
	prefix  []bool

	// known maps an include path to whether it answered private.
	known  sync.Map
	knownN atomic.Int64
	// flights coalesces shared fragment fetches per fragment key (apart
	// from the pages' flights: their results differ).
	flights singleflight.Group
	metrics *esiMetrics
	// memos are assembled pages kept for their next hits (esi_memo.go);
	// memoOff turns them off (benchmarks measure assembly without them;
	// fragment memos stay).
	memos   memos
	memoOff bool
	// templates are decoded stored templates (pages' and fragments'),
	// shared by hits; fragKeys the cache keys of fragments (esi_keys.go).
	templates esi.TemplateCache
	fragKeys  fragmentKeyCache
	// fragMemos are fresh fragments kept decoded (esi_memo.go).
	fragMemos fragmentMemos
}

// provisionESI validates and resolves the ESI block.
func (h *Handler) provisionESI() error {
	c := h.ESI
	h.esiOn = c != nil
	if c == nil {
		c = new(ESIConfig)
	}
	s := &esiState{limits: esi.DefaultLimits(), budget: defaultESIBudget, placeholder: []byte(c.PrivatePlaceholder)}
	for _, f := range []struct {
		name string
		v    *int
		dst  *int
	}{{"max_depth", c.MaxDepth, &s.limits.MaxDepth}, {"max_includes", c.MaxIncludes, &s.limits.MaxIncludes}, {"max_fetches", c.MaxFetches, &s.limits.MaxFetches}} {
		if f.v == nil {
			continue
		}
		if *f.v < 0 {
			return fmt.Errorf("craftedge: esi %s must not be negative, got %d", f.name, *f.v)
		}
		*f.dst = *f.v
	}
	if c.TimeBudget < 0 {
		return fmt.Errorf("craftedge: esi time_budget must not be negative, got %s", time.Duration(c.TimeBudget))
	}
	if c.TimeBudget > 0 {
		s.budget = time.Duration(c.TimeBudget)
	}
	for _, p := range c.PrivatePaths {
		if err := privatePathError(p); err != nil {
			return fmt.Errorf("craftedge: esi private path: %w", err)
		}
		pre := strings.HasSuffix(p, "*")
		s.private = append(s.private, strings.TrimSuffix(p, "*"))
		s.prefix = append(s.prefix, pre)
	}
	s.limits.Budget = s.budget
	s.templates.MaxBytes = maxTemplateCacheBytes
	s.metrics = newESIMetrics(h.Upstream)
	h.esi = s
	return nil
}

// esiPolicy is the include policy of a page stored under key: same scheme
// and host, none of the reserved prefixes, nothing the bypass rules would
// pass to Craft live (control panel, actions, tokens, previews).
func (h *Handler) esiPolicy(key string) *esi.Policy {
	scheme, _, _ := strings.Cut(key, "://")
	host := keyHost(key)
	return &esi.Policy{
		Scheme:   scheme,
		Host:     host,
		Reserved: reservedESIPrefixes,
		Check: func(path string) error {
			u, err := url.ParseRequestURI(path)
			if err != nil {
				return err
			}
			req := &http.Request{Method: http.MethodGet, URL: u, Host: host, Header: http.Header{}}
			if reason := h.bypass.Check(req); reason != "" {
				return fmt.Errorf("path %q is not cacheable (bypass: %s)", truncatePath(path), reason)
			}
			return nil
		},
	}
}

// privatePathError says why p is not a private_path rule, or nil.
func privatePathError(p string) error {
	if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, " \t#\\") ||
		(strings.Contains(p, "*") && strings.Index(p, "*") != len(p)-1) {
		return fmt.Errorf("%q must start with /, hold no space, # or backslash, and may only end in *", p)
	}
	return nil
}

func truncatePath(p string) string {
	if len(p) > 64 {
		return p[:64] + "…"
	}
	return p
}

// esiOptedIn reports whether a response asks for ESI processing here.
func (h *Handler) esiOptedIn(hdr http.Header) bool {
	return h.esiOn && esi.OptedIn(hdr.Values("Surrogate-Control"))
}

// compileESI returns the template to store with a 200 response's identity
// body: the parsed page when its upstream opted in, a static template for
// a fragment that did not; nil otherwise. notStored is a reason when the
// opted-in body cannot be a template (malformed markup, a limit): it is
// then relayed as it came, not stored.
func (h *Handler) compileESI(key string, status int, optedIn, fragment bool, body []byte) (tmpl []byte, notStored string) {
	if status != http.StatusOK || (!optedIn && !fragment) {
		return nil, ""
	}
	if !optedIn {
		b, err := esi.CompileStatic(body)
		if err != nil {
			h.logger.Error("compiling fragment segments", zap.String("key", key), zap.Error(err))
			return nil, "esi"
		}
		return b, ""
	}
	b, t, err := esi.Compile(body, h.esiPolicy(key), h.esi.limits)
	if err != nil {
		h.logger.Warn("ESI page not stored: its markup cannot be processed",
			zap.String("key", key), zap.Error(err))
		return nil, "esi-malformed"
	}
	for _, ref := range t.Refused {
		h.logger.Warn("ESI include refused", zap.String("key", key), zap.String("include", ref.String()))
	}
	return b, ""
}

// writeAssembled answers a request from a stored entry with an ESI
// template: its fragments resolved (the private ones before the headers,
// so their Set-Cookie joins them and the page goes out private, no-store),
// the page written in the coding the client accepts from the stored
// segments. Assembled responses carry no validator (their bytes change
// with their fragments): no 304, no ranges. A fragment failing after the
// headers went out aborts the response.
//
// memoKey, on the hit path, is the key the page entry is stored under: an
// assembly whose fragments were all fresh memory copies is kept under it
// and serves the next hits (esi_memo.go). epoch is the memory tier's purge
// epoch read before e was read (used with memoKey only): a purge of the
// page between its lookup and this assembly leaves no usable memo.
func (h *Handler) writeAssembled(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, e *pagecache.Entry, now time.Time, cacheStatus, memoKey string, epoch uint64) {
	hdr := w.Header()
	fail := func(err error, detail string) {
		h.logger.Error("ESI page not assembled", zap.String("uri", r.RequestURI), zap.Error(err))
		hdr.Set("Content-Type", "text/plain; charset=utf-8")
		hdr.Set("Cache-Control", "no-store")
		status := cacheStatus
		if i := strings.Index(status, "; detail="); i >= 0 {
			status = status[:i] // one detail: why this answer is an error
		}
		hdr.Set("Cache-Status", status+"; detail="+detail)
		w.WriteHeader(http.StatusBadGateway)
		if r.Method != http.MethodHead {
			_, _ = w.Write([]byte("A part of this page could not be loaded.\n"))
		}
	}
	t, err := h.esi.templates.Get(e.ESI)
	if err != nil {
		fail(err, "esi-damaged")
		return
	}
	if e.Flags&pagecache.FlagFromSnapshot != 0 {
		// Stored under an earlier configuration, maybe: its includes
		// must pass today's policy.
		keys := h.newFragmentKeys(r)
		if keys.err != nil {
			fail(keys.err, "esi-refused")
			return
		}
		if err := t.Recheck(h.esiPolicy(keys.scheme + "://" + keys.host + "/")); err != nil {
			fail(err, "esi-refused")
			return
		}
	}
	if e.Body == nil && e.Flags&pagecache.FlagBodyInZstd != 0 {
		if err := e.RestoreBody(); err != nil {
			fail(err, "esi-damaged")
			return
		}
	}
	if h.esi.memoOff {
		memoKey = ""
	}
	if memoKey != "" {
		m, current := h.esi.memos.get(memoKey, e, epoch, now)
		if m != nil && !current {
			m = h.recheckMemo(r, memoKey, m, epoch, now)
		}
		if m != nil {
			h.writeMemo(w, r, now, cacheStatus, m)
			return
		}
	}
	var track *memoTrack
	if memoKey != "" {
		track = new(memoTrack)
	}
	a, err := esi.NewAssembly(r.Context(), t, e.Body, h.esiSources(r, next, track), h.esi.limits)
	if err != nil {
		fail(err, "esi-damaged")
		return
	}
	defer a.Close()
	head, err := a.Prepare(esi.WaitPrivate)
	if err != nil {
		h.esiObserve(r, a.Reports())
		fail(err, "esi-failed")
		return
	}

	assembledHeader(hdr, e, now)
	if head.Private {
		hdr["Cache-Control"] = []string{"private, no-store"}
		for _, name := range []string{"Expires", "Cdn-Cache-Control", "Surrogate-Control", "Pragma"} {
			delete(hdr, name)
		}
		hdr["Set-Cookie"] = append(hdr["Set-Cookie"], head.SetCookie...)
	}
	coding := esi.CodingIdentity
	if t.Compressed {
		coding = httpcache.PreferredEncoding(r.Header.Get("Accept-Encoding"), true, true)
		addVaryAcceptEncoding(hdr)
		switch coding {
		case "zstd":
			hdr["Content-Encoding"] = contentEncodingZstd
		case "gzip":
			hdr["Content-Encoding"] = contentEncodingGzip
		}
	}
	status := e.Status

	if head.Pending || r.Method == http.MethodHead {
		// Fragments still on their way: the length is unknown, the parts
		// before them are flushed as they are written (chunked).
		hdr["Cache-Status"] = esiCacheStatus(cacheStatus, a.Reports())
		w.WriteHeader(status)
		if r.Method == http.MethodHead {
			h.esiObserve(r, a.Reports())
			return
		}
		_, err := a.Write(w, coding)
		h.esiObserve(r, a.Reports())
		if err != nil {
			h.logger.Warn("ESI page aborted after its headers", zap.String("uri", r.RequestURI), zap.Error(err))
			panic(http.ErrAbortHandler)
		}
		return
	}
	buf := assembleBuffers.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= 1<<20 {
			buf.Reset()
			assembleBuffers.Put(buf)
		}
	}()
	buf.Reset()
	if _, err := a.Write(buf, coding); err != nil {
		// Everything had settled: a failure here was known at Prepare.
		reports := a.Reports()
		h.esiObserve(r, reports)
		for _, name := range []string{"Set-Cookie", "Content-Encoding", "Vary", "Age"} {
			delete(hdr, name)
		}
		fail(err, "esi-failed")
		return
	}
	reports := a.Reports()
	hdr["Cache-Status"] = esiCacheStatus(cacheStatus, reports)
	hdr["Content-Length"] = []string{strconv.Itoa(buf.Len())}
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
	h.esiObserve(r, reports)
	if track != nil && status == http.StatusOK && memoizable(head, reports, track) {
		h.memoize(memoKey, e, t, epoch, a, reports, track, coding, buf.Bytes())
	}
}

// assembledHeader replays a stored page's header fields into hdr, without
// its validators (an assembled page's bytes change with its fragments),
// with its Age.
func assembledHeader(hdr http.Header, e *pagecache.Entry, now time.Time) {
	replayHeader(hdr, e)
	delete(hdr, "Last-Modified")
	hdr["Age"] = []string{strconv.FormatInt(int64(e.Age(now)/time.Second), 10)}
}

// serveMemo answers a hit on the page stored under key from its memo
// when one is current (no purge since it was made or checked, see
// esi_memo.go) and fresh (the page's and its fragments' freshness), without
// reading the page's entry from the memory tier: a memo is made from one
// generation of the page entry, within that entry's freshness, and this
// handler forgets it when it stores the key again. Memos of pages stored
// with Vary live under their variant's key and are found after the lookup
// (writeAssembled). It reports whether it answered.
func (h *Handler) serveMemo(w http.ResponseWriter, r *http.Request, key string, now time.Time) bool {
	if h.esi.memoOff {
		return false
	}
	mem := h.app.MemoryTier()
	m := h.esi.memos.direct(key, mem.Epoch(), now)
	if m == nil || !h.app.MemoryServes() {
		return false
	}
	mem.CountHit()
	h.metrics.hit.Inc()
	h.writeMemo(w, r, now, statusHit, m)
	return true
}

// forgetMemo drops the memo of a page stored again under key.
func (h *Handler) forgetMemo(key string) {
	if h.esiOn {
		h.esi.memos.drop(key)
	}
}

// writeMemo answers a hit from a memoized assembly.
func (h *Handler) writeMemo(w http.ResponseWriter, r *http.Request, now time.Time, cacheStatus string, m *assembledMemo) {
	hdr := w.Header()
	assembledHeader(hdr, &m.page, now)
	body := m.identity
	if m.gzip != nil || m.zstd != nil {
		switch httpcache.PreferredEncoding(r.Header.Get("Accept-Encoding"), m.gzip != nil, m.zstd != nil) {
		case "zstd":
			body = m.zstd
			hdr["Content-Encoding"] = contentEncodingZstd
		case "gzip":
			body = m.gzip
			hdr["Content-Encoding"] = contentEncodingGzip
		}
		addVaryAcceptEncoding(hdr)
	}
	if cacheStatus == statusHit {
		hdr["Cache-Status"] = m.hitStatus
	} else {
		hdr["Cache-Status"] = []string{cacheStatus + ", " + m.cacheStatus}
	}
	hdr["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(m.page.Status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
	if extra, ok := r.Context().Value(caddyhttp.ExtraLogFieldsCtxKey).(*caddyhttp.ExtraLogFields); ok {
		extra.Add(zap.Strings("esi", m.logFields))
	}
	if h.esi.metrics != nil {
		h.esi.metrics.observe(lookupRequest(r).URL.Path, m.reports)
	}
}

var assembleBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// esiCacheStatus is the page's Cache-Status member followed by one per
// fragment (RFC 9211 list), as the one value of the header.
func esiCacheStatus(page string, reports []esi.Report) []string {
	var buf [512]byte
	b := esi.AppendCacheStatus(append(buf[:0], page...), esiCacheStatusName, reports)
	return []string{string(b)}
}

// esiObserve records the fragments' outcomes in the access log (field
// "esi") and the metrics.
func (h *Handler) esiObserve(r *http.Request, reports []esi.Report) {
	if len(reports) == 0 {
		return
	}
	if extra, ok := r.Context().Value(caddyhttp.ExtraLogFieldsCtxKey).(*caddyhttp.ExtraLogFields); ok {
		s := make([]string, len(reports))
		for i, rep := range reports {
			s[i] = rep.String()
		}
		extra.Add(zap.Strings("esi", s))
	}
	if h.esi.metrics != nil {
		h.esi.metrics.observe(lookupRequest(r).URL.Path, reports)
	}
}

// errESIKillSwitch: a fragment not in memory while the kill switch is on.
var errESIKillSwitch = errors.New("kill switch on: fragments come from memory or snapshots only")
