package esi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Outcome is how a fragment was obtained, for Cache-Status and logs.
type Outcome uint8

const (
	// OutcomeMiss: fetched from the upstream (the zero value Fetch may
	// leave).
	OutcomeMiss Outcome = iota
	// OutcomeHit: a fresh cached copy.
	OutcomeHit
	// OutcomeStale: a stale or snapshot copy (from Fetch serving stale
	// while revalidating, or from Sources.Stale after src and alt failed).
	OutcomeStale
	// OutcomeAlt: src failed and alt was served.
	OutcomeAlt
	// OutcomePlaceholder: the caller's placeholder (kill switch on a
	// private fragment).
	OutcomePlaceholder
	// OutcomeFailed: nothing could be had; the include was left out
	// (onerror="continue") or failed the page.
	OutcomeFailed
	// OutcomePending: not resolved (yet) when the report was taken.
	OutcomePending
)

var outcomeNames = [...]string{"miss", "hit", "stale", "alt", "placeholder", "failed", "pending"}

// String is the outcome's name as Cache-Status details and logs use it.
func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return fmt.Sprintf("outcome(%d)", o)
}

// Fragment is what Sources.Fetch returns for one include.
type Fragment struct {
	// Body is the fragment's identity body.
	Body []byte
	// Template is the fragment's own template (it opted into ESI, or was
	// stored with Static and Compress); nil means Static(Body), written
	// in a compressed response as stored deflate blocks or a raw zstd
	// block (compressed only past 4 KiB; see encoder.part).
	Template *Template
	// Private reports a fragment answered private or no-store: fetched for
	// this visitor, never stored, and written only into a response whose
	// headers have not gone out as shareable (see Prepare).
	Private bool
	// Header holds the fragment response's headers the page's response
	// may carry; Prepare collects Set-Cookie from private fragments.
	Header http.Header
	// Outcome is how Fetch obtained it: OutcomeMiss (zero), OutcomeHit,
	// OutcomeStale (served stale while revalidating) or
	// OutcomePlaceholder.
	Outcome Outcome
}

// Sources is the caller's access to fragments; its functions are called
// from several goroutines at once. The contract, in the
// failure order the assembler follows for each include: Fetch(src); on
// error Fetch(alt) when the include has one; on error Stale(src), then
// Stale(alt); on failure nothing when onerror="continue", else the page
// fails.
type Sources struct {
	// Lookup returns a fresh cached copy of the fragment at path without
	// blocking (a memory hit), or false. The assembler asks it first, in
	// the caller's goroutine, so a page whose fragments are all cached is
	// assembled without starting any; on false it calls Fetch in a
	// goroutine of its own. A private fragment it returns is ignored.
	// May be nil.
	Lookup func(path string, depth int) (Fragment, bool)
	// Fetch returns the fragment at path (a same-site path and query, as
	// Policy.Resolve returned it) at include depth (1 for the page's own
	// includes): a fresh cached copy, or the upstream's response through
	// the page's upstream (a private one fetched with the visitor's
	// cookies, the only fragment requests that carry them). It returns an
	// error for whatever should not be served as is (transport error,
	// timeout, 5xx, breaker open, kill switch without a memory copy). It
	// must return promptly once ctx is done (the page's time budget), and
	// must not fall back to stale copies itself: Stale is asked after alt.
	Fetch func(ctx context.Context, path string, depth int) (Fragment, error)
	// Stale returns the last good copy of the fragment at path (a stale
	// memory entry, else its snapshot) without contacting the upstream,
	// or false. It is called even after the time budget is spent, so it
	// must not block. A private fragment it returns is ignored. May be nil.
	Stale func(path string, depth int) (Fragment, bool)
	// MaybePrivate reports whether the fragment at path may answer
	// private (it did before, or it is not known yet), so Prepare waits
	// for it before the page's headers go out. Nil: every fragment may.
	MaybePrivate func(path string) bool
}

// Source is where an Assembly gets its fragments, with Sources's
// contract (see there). Sources implements it with functions; a caller on
// a hot path implements it on one value of its own, which costs one
// allocation where four functions cost four.
type Source interface {
	// LookupFragment is Sources.Lookup (false when there is none).
	LookupFragment(path string, depth int) (Fragment, bool)
	// FetchFragment is Sources.Fetch.
	FetchFragment(ctx context.Context, path string, depth int) (Fragment, error)
	// StaleFragment is Sources.Stale (false when there is none).
	StaleFragment(path string, depth int) (Fragment, bool)
	// FragmentMaybePrivate is Sources.MaybePrivate (true when it is nil).
	FragmentMaybePrivate(path string) bool
}

// LookupFragment implements Source.
func (s Sources) LookupFragment(path string, depth int) (Fragment, bool) {
	if s.Lookup == nil {
		return Fragment{}, false
	}
	return s.Lookup(path, depth)
}

// FetchFragment implements Source.
func (s Sources) FetchFragment(ctx context.Context, path string, depth int) (Fragment, error) {
	return s.Fetch(ctx, path, depth)
}

// StaleFragment implements Source.
func (s Sources) StaleFragment(path string, depth int) (Fragment, bool) {
	if s.Stale == nil {
		return Fragment{}, false
	}
	return s.Stale(path, depth)
}

// FragmentMaybePrivate implements Source.
func (s Sources) FragmentMaybePrivate(path string) bool {
	return s.MaybePrivate == nil || s.MaybePrivate(path)
}

// Errors of an assembly.
var (
	// ErrFragment wraps the failure of an include without
	// onerror="continue": the page fails.
	ErrFragment = errors.New("esi: fragment failed")
	// ErrTooDeep: an include nested deeper than Limits.MaxDepth.
	ErrTooDeep = errors.New("esi: includes nested too deep")
	// ErrTooManyFetches: more fetches than Limits.MaxFetches.
	ErrTooManyFetches = errors.New("esi: too many fragment fetches")
	// ErrLatePrivate: a fragment answered private after the page's
	// headers went out; it is not written (those headers may have let
	// shared caches store the page). Report MaybePrivate for it next time.
	ErrLatePrivate = errors.New("esi: private fragment arrived after the headers")
	// ErrNotPrepared: Write called before Prepare.
	ErrNotPrepared = errors.New("esi: Write before Prepare")
)

// Report is the outcome of one include, for Cache-Status, logs and
// metrics.
type Report struct {
	// Src is the include's src; Depth its nesting (1: the page's).
	Src   string
	Depth int
	// Outcome is how the fragment written was obtained. For OutcomeAlt,
	// AltOutcome is how the alt was obtained.
	Outcome, AltOutcome Outcome
	// Private reports a private fragment.
	Private bool
	// Err is the first error met (src's), nil for a clean hit or miss.
	Err error
}

// String is "src; outcome" with ";private" and the alt's outcome when set,
// suitable for a Cache-Status detail or a log field.
func (r Report) String() string {
	var b strings.Builder
	b.WriteString(r.Src)
	b.WriteString("; ")
	b.WriteString(r.Outcome.String())
	if r.Outcome == OutcomeAlt {
		b.WriteString("=" + r.AltOutcome.String())
	}
	if r.Private {
		b.WriteString("; private")
	}
	return b.String()
}

// Wait says which fragments Prepare waits for.
type Wait uint8

const (
	// WaitPrivate waits for the fragments Sources.MaybePrivate names
	// (every fragment when it is nil); Write streams the rest.
	WaitPrivate Wait = iota
	// WaitAll waits for every fragment at every depth: Write never blocks
	// and a failing page is known before its headers.
	WaitAll
)

// Head is what the page's headers need from the fragments resolved by
// Prepare.
type Head struct {
	// SetCookie are the Set-Cookie values of the private fragments that
	// will be written, in document order; add them to the response.
	SetCookie []string
	// Private reports that a private fragment will be written: the
	// response must be Cache-Control: private, no-store (never shared).
	Private bool
	// Pending reports fragments still unresolved: the response's length
	// is not known (stream it chunked).
	Pending bool
}

// Assembly assembles one response from a template, its body and its
// fragments. It is used by one request: NewAssembly, Prepare, Write,
// Reports, Close.
type Assembly struct {
	// parent is NewAssembly's ctx; deadline the time budget's end (zero:
	// none). The context fetches run under is made from them only when a
	// fragment is fetched (runCtx): a page whose fragments are all in
	// memory is assembled without one.
	parent   context.Context
	deadline time.Time
	ctxOnce  sync.Once
	ctx      context.Context
	cancel   context.CancelFunc

	src  Source
	lim  Limits
	root *node
	// rootNode is root's storage, enc Write's encoder (one allocation
	// for all).
	rootNode node
	enc      encoder

	mu       sync.Mutex
	fetches  int
	sealed   bool // Prepare returned: headers are going out
	prepared bool
}

// node is one include being resolved, and its own includes once it is.
type node struct {
	part  *Part
	depth int
	// done is closed once the node is settled. A node resolved in
	// spawnKids (a memory copy, a limit) never gets a channel of its own:
	// settle sets closedChan.
	done chan struct{}
	once sync.Once

	// Set before done is closed:
	ok     bool
	frag   Fragment
	tmpl   *Template
	kids   []*node // parallel to tmpl.Parts, nil for static parts
	report Report
}

// closedChan is the done channel of every node settled where it was made.
var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// NewAssembly checks t against body and starts fetching every include of t
// in parallel, each under ctx and the time budget lim.Budget (counted from
// now; zero: ctx's deadline only). Close releases it.
func NewAssembly(ctx context.Context, t *Template, body []byte, src Source, lim Limits) (*Assembly, error) {
	if err := lim.Validate(); err != nil {
		return nil, err
	}
	if err := t.checkRanges(len(body)); err != nil {
		return nil, err
	}
	if s, ok := src.(Sources); src == nil || ok && s.Fetch == nil {
		return nil, errors.New("esi: no Source, or Sources.Fetch is nil")
	}
	a := &Assembly{parent: ctx, src: src, lim: lim}
	if lim.Budget > 0 {
		a.deadline = time.Now().Add(lim.Budget)
	}
	a.rootNode = node{depth: 0, ok: true, frag: Fragment{Body: body}, tmpl: t, done: closedChan}
	a.root = &a.rootNode
	a.spawnKids(a.root)
	return a, nil
}

// runCtx is the context fetches run under: the parent's, with the time
// budget, cancelled by Close. Made on first use.
func (a *Assembly) runCtx() context.Context {
	a.ctxOnce.Do(func() {
		if a.deadline.IsZero() {
			a.ctx, a.cancel = context.WithCancel(a.parent)
		} else {
			a.ctx, a.cancel = context.WithDeadline(a.parent, a.deadline)
		}
	})
	return a.ctx
}

// Close cancels fetches still running. Fetch is expected to return once
// its ctx is done; Close does not wait for it. A fetch starting after
// Close (an alt, or a nested include settling late) gets a cancelled
// context.
func (a *Assembly) Close() {
	a.ctxOnce.Do(func() { a.ctx = cancelledCtx })
	if a.cancel != nil {
		a.cancel()
	}
}

// cancelledCtx is the context of fetches starting after Close, when no
// context was made before.
var cancelledCtx = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// spawnKids creates n's include nodes and starts resolving them.
func (a *Assembly) spawnKids(n *node) {
	count := 0
	for i := range n.tmpl.Parts {
		if n.tmpl.Parts[i].Kind == KindInclude {
			count++
		}
	}
	if count == 0 {
		return
	}
	n.kids = make([]*node, len(n.tmpl.Parts))
	slab := make([]node, count)
	for i := range n.tmpl.Parts {
		p := &n.tmpl.Parts[i]
		if p.Kind != KindInclude {
			continue
		}
		k := &slab[0]
		slab = slab[1:]
		k.part, k.depth = p, n.depth+1
		k.report = Report{Src: p.Src, Depth: k.depth, Outcome: OutcomePending}
		n.kids[i] = k
		if k.depth > a.lim.MaxDepth {
			a.settle(k, Fragment{}, OutcomeFailed, fmt.Errorf("%w: depth %d, limit %d", ErrTooDeep, k.depth, a.lim.MaxDepth))
			continue
		}
		if !a.count() {
			a.settle(k, Fragment{}, OutcomeFailed, fmt.Errorf("%w: limit %d", ErrTooManyFetches, a.lim.MaxFetches))
			continue
		}
		if f, ok := a.src.LookupFragment(p.Src, k.depth); ok && !f.Private {
			if f.Outcome == OutcomeMiss {
				f.Outcome = OutcomeHit // a memory copy, whatever Lookup said
			}
			a.settle(k, f, f.Outcome, nil)
			continue
		}
		k.done = make(chan struct{})
		go a.resolve(k)
	}
}

// count counts one fragment use (an include, or an alt fetched) and
// reports whether it is within Limits.MaxFetches.
func (a *Assembly) count() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.fetches++
	return a.fetches <= a.lim.MaxFetches
}

// fetch calls Sources.Fetch, counting the fetch against the limit unless
// it was counted already (an include's src is, when its node is made).
func (a *Assembly) fetch(path string, depth int, counted bool) (Fragment, error) {
	if !counted && !a.count() {
		return Fragment{}, fmt.Errorf("%w: limit %d", ErrTooManyFetches, a.lim.MaxFetches)
	}
	ctx := a.runCtx()
	if err := ctx.Err(); err != nil {
		return Fragment{}, fmt.Errorf("fetching %s: %w", path, err)
	}
	return a.src.FetchFragment(ctx, path, depth)
}

// resolve runs the failure order for one include.
func (a *Assembly) resolve(n *node) {
	p := n.part
	frag, err := a.fetch(p.Src, n.depth, true)
	if err == nil {
		a.settle(n, frag, frag.Outcome, nil)
		return
	}
	first := err
	if p.Alt != "" {
		if f, err := a.fetch(p.Alt, n.depth, false); err == nil {
			a.settle(n, f, OutcomeAlt, first)
			return
		}
	}
	a.fallback(n, first)
}

// fallback settles n from Sources.Stale (src, then alt), or as failed.
func (a *Assembly) fallback(n *node, first error) {
	for _, path := range [2]string{n.part.Src, n.part.Alt} {
		if path == "" {
			continue
		}
		if f, ok := a.src.StaleFragment(path, n.depth); ok && !f.Private {
			a.settle(n, f, OutcomeStale, first)
			return
		}
	}
	a.settle(n, Fragment{}, OutcomeFailed, first)
}

// settle records n's result once, creates its own includes and wakes
// whoever waits.
func (a *Assembly) settle(n *node, f Fragment, o Outcome, err error) {
	n.once.Do(func() {
		if o != OutcomeFailed {
			t := f.Template
			if t == nil {
				t = Static(f.Body)
			}
			if cerr := t.checkRanges(len(f.Body)); cerr != nil {
				o, err = OutcomeFailed, fmt.Errorf("fragment %s: %w", n.part.Src, cerr)
			} else {
				n.tmpl = t
			}
		}
		if o != OutcomeFailed && f.Private {
			a.mu.Lock()
			late := a.sealed
			a.mu.Unlock()
			if late {
				o, err = OutcomeFailed, ErrLatePrivate
			}
		}
		if o == OutcomeAlt {
			n.report.AltOutcome = f.Outcome
		}
		n.report.Outcome, n.report.Err, n.report.Private = o, err, f.Private
		if o != OutcomeFailed {
			n.ok, n.frag = true, f
			a.spawnKids(n)
		}
		if n.done == nil {
			n.done = closedChan // settled where it was made
		} else {
			close(n.done)
		}
	})
}

// wait blocks until n is settled; when the time budget runs out first, n
// is settled from Stale or as failed (a Fetch ignoring ctx cannot hold the
// page).
func (a *Assembly) wait(n *node) {
	if settled(n) {
		return
	}
	ctx := a.runCtx()
	select {
	case <-n.done:
		return
	case <-ctx.Done():
	}
	select {
	case <-n.done:
	default:
		a.fallback(n, fmt.Errorf("fetching %s: %w", n.part.Src, ctx.Err()))
	}
	<-n.done
}

// waitTree waits for n and everything it includes, at every depth.
func (a *Assembly) waitTree(n *node) {
	a.wait(n)
	for _, k := range n.kids {
		if k != nil {
			a.waitTree(k)
		}
	}
}

// treeErr reports why n cannot be written: it failed, or an include of it
// without onerror="continue" failed (at any depth).
func treeErr(n *node) error {
	if !n.ok {
		if n.report.Err != nil {
			return n.report.Err
		}
		return errors.New("no fragment")
	}
	for _, k := range n.kids {
		if k == nil || k.part.Continue {
			continue
		}
		if err := treeErr(k); err != nil {
			return fmt.Errorf("%s: %w", k.part.Src, err)
		}
	}
	return nil
}

// walk calls fn on n's includes in document order, depth first, descending
// into an include when fn returns true (only ever for a settled one).
func walk(n *node, fn func(k *node) bool) {
	for _, k := range n.kids {
		if k != nil && fn(k) {
			walk(k, fn)
		}
	}
}

func settled(n *node) bool {
	select {
	case <-n.done:
		return true
	default:
		return false
	}
}

// Prepare waits for the fragments the page's headers depend on (see
// Wait), then seals the assembly: a private fragment settling later is not
// written (ErrLatePrivate). It returns the Set-Cookie values of the private
// fragments that will be written, and an error wrapping ErrFragment when an
// include without onerror="continue" has already failed for good (answer
// the page's error instead of the page).
func (a *Assembly) Prepare(w Wait) (Head, error) {
	walk(a.root, func(k *node) bool {
		if w == WaitAll || a.src.FragmentMaybePrivate(k.part.Src) {
			a.wait(k)
		}
		return settled(k)
	})

	a.mu.Lock()
	a.sealed, a.prepared = true, true
	a.mu.Unlock()

	var h Head
	var pageErr error
	walk(a.root, func(k *node) bool {
		if !settled(k) {
			h.Pending = true
			return false
		}
		if err := treeErrSettled(k); err != nil {
			if !k.part.Continue && pageErr == nil {
				pageErr = fmt.Errorf("%w: %s: %v", ErrFragment, k.part.Src, err)
			}
			return false
		}
		if k.frag.Private {
			h.Private = true
			h.SetCookie = append(h.SetCookie, k.frag.Header.Values("Set-Cookie")...)
		}
		return true
	})
	return h, pageErr
}

// treeErrSettled is treeErr limited to what has settled (pending nodes
// count as fine for now).
func treeErrSettled(n *node) error {
	if !settled(n) {
		return nil
	}
	if !n.ok {
		return treeErr(n)
	}
	for _, k := range n.kids {
		if k == nil || k.part.Continue {
			continue
		}
		if err := treeErrSettled(k); err != nil {
			return fmt.Errorf("%s: %w", k.part.Src, err)
		}
	}
	return nil
}

// Write writes the assembled page to w in coding (CodingIdentity,
// CodingGzip or CodingZstd), in order: static parts from their stored
// segments, each fragment where its include was. Before waiting for a
// fragment still pending it flushes w (when w has Flush), so the parts
// before it reach the client. A fragment is written only once it and
// everything it includes have settled. It returns the identity length
// written; an error wrapping ErrFragment means an include without
// onerror="continue" failed after the headers went out: abort the response
// (the client must not take a truncated page for a complete one).
func (a *Assembly) Write(w io.Writer, coding string) (int64, error) {
	a.mu.Lock()
	prepared := a.prepared
	a.mu.Unlock()
	if !prepared {
		return 0, ErrNotPrepared
	}
	enc := &a.enc
	if err := enc.init(w, coding); err != nil {
		return 0, err
	}
	if err := a.writeNode(enc, a.root); err != nil {
		return enc.n, err
	}
	err := enc.close()
	return enc.n, err
}

func (a *Assembly) writeNode(enc *encoder, n *node) error {
	body := n.frag.Body
	for i := range n.tmpl.Parts {
		p := &n.tmpl.Parts[i]
		if p.Kind == KindStatic {
			enc.part(body, p)
			continue
		}
		k := n.kids[i]
		if !settled(k) {
			flush(enc.w)
		}
		a.waitTree(k)
		if err := treeErr(k); err != nil {
			if p.Continue {
				continue
			}
			return fmt.Errorf("%w: %s: %v", ErrFragment, p.Src, err)
		}
		if err := a.writeNode(enc, k); err != nil {
			return err
		}
	}
	return enc.err
}

func flush(w io.Writer) {
	switch f := w.(type) {
	case http.Flusher:
		f.Flush()
	case interface{ Flush() error }:
		_ = f.Flush()
	}
}

// Reports returns the outcome of every include met, in document order
// (depth first). Take it after Write.
func (a *Assembly) Reports() []Report {
	return appendReports(make([]Report, 0, 4), a.root)
}

func appendReports(out []Report, n *node) []Report {
	for _, k := range n.kids {
		if k == nil {
			continue
		}
		if !settled(k) {
			out = append(out, Report{Src: k.part.Src, Depth: k.depth, Outcome: OutcomePending})
			continue
		}
		out = append(out, k.report)
		out = appendReports(out, k)
	}
	return out
}

// CacheStatus returns one RFC 9211 Cache-Status list member per report,
// named cacheName, with the fragment's path as its key: "hit" for a fresh
// copy, "hit; detail=stale" for a stale one, "fwd=miss" for a fetch,
// "fwd=miss; detail=alt-<alt's outcome>" when alt was served,
// "detail=placeholder|failed|pending" otherwise; a private fragment's
// detail ends in "-private" (or is "private"). Append them after the
// page's own member.
func CacheStatus(cacheName string, rs []Report) []string {
	out := make([]string, 0, len(rs))
	for _, r := range rs {
		out = append(out, string(AppendCacheStatus(nil, cacheName, []Report{r})))
	}
	return out
}

// AppendCacheStatus appends CacheStatus's members to dst, each preceded
// by ", " (so dst may hold the page's own member already), without
// allocating beyond dst's growth.
func AppendCacheStatus(dst []byte, cacheName string, rs []Report) []byte {
	for i := range rs {
		r := &rs[i]
		if len(dst) > 0 {
			dst = append(dst, ", "...)
		}
		dst = append(dst, cacheName...)
		var detail, detail2 string
		switch r.Outcome {
		case OutcomeHit:
			dst = append(dst, "; hit"...)
		case OutcomeStale:
			dst = append(dst, "; hit"...)
			detail = "stale"
		case OutcomeMiss:
			dst = append(dst, "; fwd=miss"...)
		case OutcomeAlt:
			dst = append(dst, "; fwd=miss"...)
			detail, detail2 = "alt-", r.AltOutcome.String()
		default:
			detail = r.Outcome.String()
		}
		dst = append(dst, "; key="...)
		dst = appendSFString(dst, r.Src)
		switch {
		case detail != "" && r.Private:
			dst = append(dst, "; detail="...)
			dst = append(dst, detail...)
			dst = append(dst, detail2...)
			dst = append(dst, "-private"...)
		case detail != "":
			dst = append(dst, "; detail="...)
			dst = append(dst, detail...)
			dst = append(dst, detail2...)
		case r.Private:
			dst = append(dst, "; detail=private"...)
		}
	}
	return dst
}

// appendSFString appends s quoted as an RFC 8941 String (printable ASCII,
// with " and \ escaped; include paths hold nothing else).
func appendSFString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e {
			continue
		}
		if c == '"' || c == '\\' {
			dst = append(dst, '\\')
		}
		dst = append(dst, c)
	}
	return append(dst, '"')
}
