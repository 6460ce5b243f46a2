package cachehandler

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/craftedge/craftedge/circuit"
	"github.com/craftedge/craftedge/esi"
	"github.com/craftedge/craftedge/pagecache"
)

// Fragments are cache entries of their own: the key a request for the
// fragment's path on the page's host would have (so a fragment's own tags,
// TTL, stale windows, snapshot and purges apply to it as to a page), the
// upstream request built from that key alone, through the page's next
// handler, under the upstream's breaker. The one exception to "nothing
// unkeyed reaches Craft" is a fragment known to be private: it is fetched
// per visitor with the visitor's cookies, and never stored or shared.

// nextCtxKey carries the next handler of a miss to writeEntry (a stored
// page assembled on the miss or fallback path fetches its fragments
// through it).
type nextCtxKey struct{}

func withNext(r *http.Request, next caddyhttp.Handler) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), nextCtxKey{}, next))
}

func nextOf(r *http.Request) caddyhttp.Handler {
	next, _ := r.Context().Value(nextCtxKey{}).(caddyhttp.Handler)
	return next
}

// esiSources are the fragment sources of one page request r. next is nil
// when the upstream must not be used (fallback without a next handler).
func (h *Handler) esiSources(r *http.Request, next caddyhttp.Handler, track *memoTrack) esi.Source {
	s := &fragmentSources{h: h, r: r, next: next, track: track, kill: h.app.KillSwitchOn(h.Upstream, h.SnapshotOnly)}
	if next == nil {
		s.kill = true
	}
	// The route's variables (root, set by the root directive, which
	// php_fastcgi reads) as they are now, in this goroutine: fragment
	// requests get a copy, never the page's map.
	if !s.kill {
		if m, ok := r.Context().Value(caddyhttp.VarsCtxKey).(map[string]any); ok {
			s.vars = make(map[string]any, len(m))
			for k, v := range m {
				s.vars[k] = v
			}
		}
	}
	s.keys = h.newFragmentKeys(r)
	return s
}

// fragmentSources implements esi.Source for one page request (one value,
// one allocation per assembled response).
type fragmentSources struct {
	h     *Handler
	r     *http.Request
	next  caddyhttp.Handler
	track *memoTrack
	vars  map[string]any
	kill  bool
	keys  fragmentKeys
}

// LookupFragment is a fresh memory copy; under the kill switch, where
// nothing reaches the upstream, every include is resolved at once from
// what is stored (or the placeholder), without goroutines.
func (s *fragmentSources) LookupFragment(path string, _ int) (esi.Fragment, bool) {
	if !s.kill {
		return s.h.fragmentCached(s.r, &s.keys, s.track, path, false, false)
	}
	if s.h.knownPrivate(path) {
		return s.h.placeholder(), true
	}
	if f, ok := s.h.fragmentCached(s.r, &s.keys, nil, path, false, true); ok {
		return f, true
	}
	return s.h.fragmentCached(s.r, &s.keys, nil, path, true, true)
}

func (s *fragmentSources) FetchFragment(ctx context.Context, path string, _ int) (esi.Fragment, error) {
	return s.h.fragmentFetch(ctx, s.r, &s.keys, s.next, s.vars, s.kill, path)
}

func (s *fragmentSources) StaleFragment(path string, _ int) (esi.Fragment, bool) {
	return s.h.fragmentCached(s.r, &s.keys, nil, path, true, s.kill)
}

func (s *fragmentSources) FragmentMaybePrivate(path string) bool {
	return s.h.fragmentMaybePrivate(path)
}

// fragmentRequest is r turned into a GET of the fragment at path (path and
// query as the policy resolved it) under ctx, with r's headers (only the
// keyed ones are ever sent upstream) and connection.
func fragmentRequest(ctx context.Context, r *http.Request, path string) (*http.Request, error) {
	u, err := url.ParseRequestURI(path)
	if err != nil {
		return nil, fmt.Errorf("include %q: %w", path, err)
	}
	fr := r.WithContext(ctx) // the one shallow copy
	fr.Method = http.MethodGet
	fr.URL = u
	fr.RequestURI = path
	fr.Body = http.NoBody
	fr.ContentLength = 0
	return fr, nil
}

// fragmentKeys computes the cache keys of a page request's fragments: the
// key a request for the fragment's path on the page's host, with the
// page's keyed headers and cookies, would have. The page's part is
// computed once per assembled response.
type fragmentKeys struct {
	scheme, host, suffix string
	// prefix is the path prefix a handle_path (or uri strip_prefix) in
	// front of the handler stripped from the page's URL: the page's
	// upstream sees its includes' paths as they are written, visitors
	// reach them under prefix, so that is their cache key (with the
	// rewrite keyed, as a visitor's request for prefix+src has it).
	prefix string
	err    error
}

func (h *Handler) newFragmentKeys(r *http.Request) fragmentKeys {
	key, spec, reason := h.requestKey(r, r)
	if reason != "" {
		return fragmentKeys{err: fmt.Errorf("includes of a request that is not cacheable (%s)", reason)}
	}
	// The key is the URL's normalized form (which escapes every control
	// byte), then "\x00" and the keyed extras, if any: the suffix.
	suffix := ""
	if i := strings.IndexByte(key, 0); i >= 0 {
		suffix = key[i:]
	}
	if !strings.HasPrefix(key, spec.scheme+"://") {
		return fragmentKeys{err: errors.New("includes: unexpected page key")}
	}
	// A path stripped in front of the handler: its includes live under
	// the same prefix. Any other rewrite leaves them at the site's root.
	prefix := ""
	if lr := lookupRequest(r); lr != r {
		prefix = strippedPrefix(lr.URL, r.URL)
		if prefix == "" {
			// Another rewrite (or a strip not found: handle_path /shop*
			// turns /shopx/p into /x/p) may have chosen another upstream
			// than the root's paths have: the includes are fetched as
			// written, through this route, and keyed with the rewrite that
			// led here, an extra no direct request has. Never shared with
			// the root's entries of the same paths, whatever a visitor
			// asked for.
			suffix += "\x00esi-under=" + lr.URL.EscapedPath() + "?" + h.keys.Query(lr.URL.RawQuery) +
				" " + r.URL.EscapedPath() + "?" + h.keys.Query(r.URL.RawQuery)
		}
	}
	return fragmentKeys{scheme: spec.scheme, host: r.Host, suffix: suffix, prefix: prefix}
}

// strippedPrefix is the path prefix stripped from orig to give cur, in
// escaped form ("" if cur is not orig with a prefix removed). The escaped
// paths are compared first; then the decoded ones, as handle_path matches
// and strips them: "/shop%2Fp" is "/shop/p" stripped of "/shop", and its
// includes live under "/shop" like those of "/shop/p". Found in neither,
// a visitor's encoding would key a stripped page's includes at the site's
// root, shared with the root's own paths of the same name.
func strippedPrefix(orig, cur *url.URL) string {
	o, c := orig.EscapedPath(), cur.EscapedPath()
	if len(o) > len(c) && strings.HasSuffix(o, c) && strings.HasPrefix(c, "/") {
		return o[:len(o)-len(c)]
	}
	o, c = orig.Path, cur.Path
	if len(o) > len(c) && strings.HasSuffix(o, c) && strings.HasPrefix(c, "/") {
		return (&url.URL{Path: o[:len(o)-len(c)]}).EscapedPath()
	}
	return ""
}

// key is the cache key of the fragment at path (path and query, as the
// policy resolved it). The fragment's upstream request is built from the
// same path and the same keyed headers, so it is a function of this key.
func (k *fragmentKeys) key(h *Handler, path string) (string, error) {
	if k.err != nil {
		return "", k.err
	}
	id := fragmentKeyID{scheme: k.scheme, host: k.host, suffix: k.suffix, prefix: k.prefix, path: path}
	if key, ok := h.esi.fragKeys.get(id); ok {
		return key, nil
	}
	p, q, _ := strings.Cut(path, "?")
	var key string
	if k.prefix == "" {
		key = h.keys.Key(k.scheme, k.host, p, q) + k.suffix
	} else {
		u, err := url.ParseRequestURI(path)
		if err != nil {
			return "", fmt.Errorf("include %q: %w", path, err)
		}
		key = h.keys.Key(k.scheme, k.host, k.prefix+u.EscapedPath(), q) +
			withRewrite(k.suffix, "rw="+u.EscapedPath()+"?"+h.keys.Query(q))
	}
	h.esi.fragKeys.put(id, key)
	return key, nil
}

// withRewrite puts a rewrite's extra ("rw=…") into a key suffix where
// requestKey puts it: after the forwarded scheme's and host's extras,
// before the others.
func withRewrite(suffix, rw string) string {
	extras := strings.Split(strings.TrimPrefix(suffix, "\x00"), "\x00")
	if suffix == "" {
		extras = nil
	}
	i := 0
	for i < len(extras) && (strings.HasPrefix(extras[i], "conn-tls=") || strings.HasPrefix(extras[i], "xfh=")) {
		i++
	}
	extras = append(extras[:i], append([]string{rw}, extras[i:]...)...)
	return "\x00" + strings.Join(extras, "\x00")
}

// fragmentCached returns the fragment at path from the memory tier: a
// fresh copy, or with stale a copy servable after an error (any age under
// the kill switch), else its snapshot.
func (h *Handler) fragmentCached(r *http.Request, keys *fragmentKeys, track *memoTrack, path string, stale, kill bool) (esi.Fragment, bool) {
	key, err := keys.key(h, path)
	if err != nil {
		return esi.Fragment{}, false
	}
	now := nowFunc()
	// Read before the lookup: a purge while it runs makes the memo it
	// leaves unusable.
	epoch := h.app.MemoryTier().Epoch()
	if !stale {
		if m := h.esi.fragMemos.get(key, epoch, now); m != nil {
			track.noteMemo(key, m)
			return m.frag, true
		}
	}
	var e pagecache.Entry
	_, variantKey, found := h.lookup(r, key, &e)
	if found && e.Status == http.StatusOK {
		switch {
		case !stale && e.Fresh(now):
			track.note(key, &e, variantKey != "")
			f, ok := h.fragmentOf(&e, esi.OutcomeHit)
			if ok && variantKey == "" {
				h.esi.fragMemos.put(key, &e, f, epoch)
			}
			return f, ok
		case stale && (e.ServableOnError(now) || (kill && !e.StaleProhibited()) ||
			(e.StaleProhibited() && h.ServeStaleDespiteOrigin)):
			return h.fragmentOf(&e, esi.OutcomeStale)
		}
	}
	if !stale {
		return esi.Fragment{}, false
	}
	snapKey := key
	if variantKey != "" {
		snapKey = variantKey
	}
	rec, ok, err := h.app.Snapshot(snapKey)
	if err != nil || !ok {
		return esi.Fragment{}, false
	}
	var se pagecache.Entry
	if se.Decode(rec.Value) != nil || se.Flags&pagecache.FlagVaryMarker != 0 || se.Status != http.StatusOK {
		return esi.Fragment{}, false
	}
	if se.StaleProhibited() && !se.ServableOnError(now) && !h.ServeStaleDespiteOrigin {
		return esi.Fragment{}, false
	}
	f, ok := h.fragmentOf(&se, esi.OutcomeStale)
	if ok && f.Template != nil && f.Template.Includes() > 0 {
		// A snapshot may predate today's configuration.
		if err := f.Template.Recheck(h.esiPolicy(key)); err != nil {
			h.logger.Warn("fragment snapshot refused by the include policy", zap.String("include", path), zap.Error(err))
			return esi.Fragment{}, false
		}
	}
	return f, ok
}

// fragmentOf is the fragment of a stored entry.
func (h *Handler) fragmentOf(e *pagecache.Entry, o esi.Outcome) (esi.Fragment, bool) {
	if e.Body == nil && e.Flags&pagecache.FlagBodyInZstd != 0 {
		if e.RestoreBody() != nil {
			return esi.Fragment{}, false
		}
	}
	f := esi.Fragment{Body: e.Body, Outcome: o}
	if e.ESI != nil {
		t, err := h.esi.templates.Get(e.ESI)
		if err != nil {
			h.logger.Error("stored fragment template damaged", zap.Error(err))
			return esi.Fragment{}, false
		}
		f.Template = t
	}
	return f, true
}

// fragmentMaybePrivate reports whether the fragment at path may answer
// private: configured so, answered so before, or not known yet.
func (h *Handler) fragmentMaybePrivate(path string) bool {
	if h.esi.configuredPrivate(path) {
		return true
	}
	v, ok := h.esi.known.Load(path)
	return !ok || v.(bool)
}

// knownPrivate reports whether the fragment at path is known private, so
// its fetch carries the visitor's cookies.
func (h *Handler) knownPrivate(path string) bool {
	if h.esi.configuredPrivate(path) {
		return true
	}
	v, ok := h.esi.known.Load(path)
	return ok && v.(bool)
}

func (s *esiState) configuredPrivate(path string) bool {
	for i, p := range s.private {
		if path == p || (s.prefix[i] && strings.HasPrefix(path, p)) {
			return true
		}
	}
	return false
}

// learn remembers whether the fragment at path answered private (bounded:
// past maxKnownFragments paths, new ones stay unknown, so they keep being
// waited for before the headers, which is safe).
func (s *esiState) learn(path string, private bool) {
	if v, ok := s.known.Load(path); ok && v.(bool) == private {
		return
	}
	if _, loaded := s.known.Swap(path, private); !loaded {
		if s.knownN.Add(1) > maxKnownFragments {
			s.known.Delete(path)
			s.knownN.Add(-1)
		}
	}
}

// fragmentFetch gets the fragment at path from the upstream: a shared
// fetch (coalesced, cookie-less, stored when cacheable) unless the
// fragment is known private, then a private one with the visitor's
// cookies. A shared fetch answering private (or not storable) is
// discarded, learnt, and made again as a private one. With the kill switch
// on, nothing reaches the upstream: private fragments get the placeholder.
func (h *Handler) fragmentFetch(ctx context.Context, r *http.Request, keys *fragmentKeys, next caddyhttp.Handler, vars map[string]any, kill bool, path string) (esi.Fragment, error) {
	if h.knownPrivate(path) {
		if kill {
			return h.placeholder(), nil
		}
		return h.fetchPrivate(ctx, r, keys, next, vars, path)
	}
	if kill {
		return esi.Fragment{}, errESIKillSwitch
	}
	key, err := keys.key(h, path)
	if err != nil {
		return esi.Fragment{}, err
	}
	ch := h.esi.flights.DoChan(key, func() (any, error) {
		return h.fetchShared(r, next, vars, path, key), nil
	})
	var res *fragmentResult
	select {
	case v := <-ch:
		res = v.Val.(*fragmentResult)
	case <-ctx.Done():
		return esi.Fragment{}, fmt.Errorf("fetching %s: %w", path, ctx.Err())
	}
	switch {
	case res.err != nil:
		return esi.Fragment{}, res.err
	case res.private:
		h.esi.learn(path, true)
		return h.fetchPrivate(ctx, r, keys, next, vars, path)
	}
	h.esi.learn(path, false)
	var e pagecache.Entry
	if err := e.Decode(res.raw); err != nil {
		return esi.Fragment{}, fmt.Errorf("fragment %s: %w", path, err)
	}
	f, ok := h.fragmentOf(&e, esi.OutcomeMiss)
	if !ok {
		return esi.Fragment{}, fmt.Errorf("fragment %s: stored copy unusable", path)
	}
	return f, nil
}

// placeholder is what a private fragment shows under the kill switch.
func (h *Handler) placeholder() esi.Fragment {
	return esi.Fragment{Body: h.esi.placeholder, Outcome: esi.OutcomePlaceholder}
}

// fragmentResult is a shared fragment fetch's outcome.
type fragmentResult struct {
	raw     []byte // the encoded entry (stored, or not when memory refused)
	private bool   // answered private, no-store or otherwise not storable
	err     error
}

// fragmentCall is one upstream call for a fragment.
type fragmentCall struct {
	status int
	header http.Header
	body   []byte
	// notStored is why the response may not be stored ("" when it may;
	// not asked for a private fetch, never stored).
	notStored string
	up        *http.Request
}

// callFragment makes one upstream call for the fragment at path on behalf
// of page request r, under the breaker and the handler's timeout (and
// ctx). cookie, when set, is the visitor's Cookie header (private
// fragments only). The request is built from the fragment's key alone
// (upstream_request.go), plus that cookie.
func (h *Handler) callFragment(ctx context.Context, r *http.Request, next caddyhttp.Handler, vars map[string]any, path, key, cookie string) (*fragmentCall, error) {
	if next == nil {
		return nil, errESIKillSwitch
	}
	srv, _ := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	if srv == nil {
		return nil, errors.New("no Caddy server in the request context")
	}
	// One context for the handler's timeout (no timer of its own when the
	// page's time budget ends first).
	ctx, cancel := context.WithTimeoutCause(ctx, time.Duration(h.Timeout), errUpstreamTimeout)
	defer cancel()

	fr, err := fragmentRequest(ctx, r, path)
	if err != nil {
		return nil, err
	}
	call := &fragmentCall{}
	decide := func(status int, hdr http.Header) bool {
		if cookie == "" { // a private fetch's answer is never stored
			call.notStored = h.storableReason(call.up, status, hdr)
		}
		return true
	}
	rec := newUpstreamRecorder(discardWriter{header: make(http.Header)}, h.MaxEntrySize, decide, nil)
	// A request context of its own (replacer, variables, original
	// request): the fragment's handlers run beside the page's.
	fr = caddyhttp.PrepareRequest(fr, caddy.NewReplacer(), rec, srv)
	if m, ok := fr.Context().Value(caddyhttp.VarsCtxKey).(map[string]any); ok {
		for k, v := range vars {
			if _, set := m[k]; !set {
				m[k] = v
			}
		}
	}
	fkey, spec, reason := h.requestKey(fr, fr)
	if reason != "" {
		return nil, fmt.Errorf("include %q: not cacheable (%s)", path, reason)
	}
	if key == "" {
		key = fkey
	}
	up := h.upstreamRequest(fr.Context(), fr, &spec, h.storedVary(key))
	if cookie != "" {
		up.Header.Set("Cookie", cookie)
	}
	call.up = up

	res := &fetchResult{}
	start := time.Now()
	status := 0
	err = h.breaker.RunOn(path, func() circuit.Outcome {
		err := serveRecovering(next, rec, up)
		status = rec.status
		timedOut := errors.Is(context.Cause(ctx), errUpstreamTimeout)
		switch {
		case timedOut:
			res.failed, res.failStatus, res.failErr = true, http.StatusGatewayTimeout, errUpstreamTimeout
		case err != nil:
			res.failed, res.failStatus, res.failErr = true, http.StatusBadGateway, err
			var he caddyhttp.HandlerError
			if errors.As(err, &he) && he.StatusCode >= 500 {
				res.failStatus = he.StatusCode
			}
		case rec.mode == modeFailed:
			res.failed, res.failStatus, res.errStatus = true, rec.status, rec.status
			res.failErr = fmt.Errorf("status %d", rec.status)
		}
		return upstreamOutcome(path, res, status)
	})
	h.observeCall(err, res, status, start)
	if res.failed {
		return nil, fmt.Errorf("fragment %s: %w", path, res.failErr)
	}
	switch rec.mode {
	case modeBuffer:
	case modeUndecided:
		return nil, fmt.Errorf("fragment %s: empty response", path)
	case modePassthrough:
		return nil, fmt.Errorf("fragment %s: larger than max_entry_size", path)
	default:
		return nil, fmt.Errorf("fragment %s: status %d", path, rec.status)
	}
	if rec.status != http.StatusOK {
		return nil, fmt.Errorf("fragment %s: status %d", path, rec.status)
	}
	call.status, call.header, call.body = rec.status, rec.header, rec.body.Bytes()
	return call, nil
}

// fetchShared is the coalesced, cookie-less fetch of a fragment: stored
// when cacheable (with its own tags, freshness and snapshot), else
// reported private and discarded.
func (h *Handler) fetchShared(r *http.Request, next caddyhttp.Handler, vars map[string]any, path, key string) *fragmentResult {
	epoch := h.app.MemoryTier().Epoch()
	// Detached from the page's client and budget (waiters share it); the
	// timeout bounds it.
	call, err := h.callFragment(context.WithoutCancel(r.Context()), r, next, vars, path, key, "")
	if err != nil {
		h.logger.Warn("fragment fetch failed", zap.String("include", path), zap.Error(err))
		return &fragmentResult{err: err}
	}
	if call.notStored != "" {
		return &fragmentResult{private: true}
	}
	res := &fetchResult{fragment: true}
	h.storeResponse(call.up, key, call.status, call.header, call.body, "", epoch, res)
	if res.raw == nil || (res.notStoredReason != "" && res.notStoredReason != "memory" && res.notStoredReason != "purged") {
		return &fragmentResult{err: fmt.Errorf("fragment %s: not usable (%s)", path, res.notStoredReason)}
	}
	return &fragmentResult{raw: res.raw}
}

// fetchPrivate fetches a private fragment for this visitor, with their
// cookies; it is never stored. Its Set-Cookie reaches the visitor. One
// that opts into ESI itself is parsed (for this request only, under the
// page's include policy): its includes are resolved as the page's are,
// one level deeper, within max_depth and max_fetches.
func (h *Handler) fetchPrivate(ctx context.Context, r *http.Request, keys *fragmentKeys, next caddyhttp.Handler, vars map[string]any, path string) (esi.Fragment, error) {
	cookie := strings.Join(r.Header.Values("Cookie"), "; ")
	call, err := h.callFragment(ctx, r, next, vars, path, "", cookie)
	if err != nil {
		return esi.Fragment{}, err
	}
	f := esi.Fragment{Body: call.body, Private: true}
	if h.esiOptedIn(call.header) {
		if keys.err != nil {
			return esi.Fragment{}, keys.err
		}
		t, err := esi.Parse(call.body, h.esiPolicy(keys.scheme+"://"+keys.host+"/"), h.esi.limits)
		if err != nil {
			return esi.Fragment{}, fmt.Errorf("private fragment %s: %w", path, err)
		}
		for _, ref := range t.Refused {
			h.logger.Warn("ESI include refused", zap.String("include", path), zap.String("refused", ref.String()))
		}
		f.Template = t
	}
	if sc := call.header.Values("Set-Cookie"); len(sc) > 0 {
		f.Header = http.Header{"Set-Cookie": sc}
	}
	return f, nil
}

// serveRecovering runs next for a fragment, turning a panic (reverse_proxy
// aborting a response with http.ErrAbortHandler) into an error: fragment
// calls run in goroutines of their own, where a panic would end the
// process.
func serveRecovering(next caddyhttp.Handler, w http.ResponseWriter, r *http.Request) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = caddyhttp.Error(http.StatusBadGateway, fmt.Errorf("fragment handler panicked: %v", p))
		}
	}()
	return next.ServeHTTP(w, r)
}
