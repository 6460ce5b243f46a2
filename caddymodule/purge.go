package caddymodule

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/craftedge/craftedge/httpcache"
	"github.com/craftedge/craftedge/jobs"
	"github.com/craftedge/craftedge/pagecache"
)

// PurgeRequest is the body of POST /craftedge/purge.
type PurgeRequest struct {
	// Tags purges every entry carrying any of these cache tags.
	Tags []string `json:"tags,omitempty"`
	// URLs purges entries by absolute URL; a URL without a query purges
	// every query variant of its path.
	URLs []string `json:"urls,omitempty"`
	// Prefixes purges every entry whose URL starts with one of these
	// absolute URL prefixes (e.g. "https://example.com/blog/").
	Prefixes []string `json:"prefixes,omitempty"`
	// Hosts purges every entry of these hosts.
	Hosts []string `json:"hosts,omitempty"`
	// All empties the memory tier. It is always a hard purge.
	All bool `json:"all,omitempty"`
	// Mode is "soft" or "hard"; absent, the app's PurgeMode (soft by
	// default). A soft purge marks the memory copies it selects stale,
	// never fresh again, and keeps them: a request for such a page waits
	// for the upstream at most the handler's stale_after and then gets
	// the pre-purge copy ("detail=stale-after-purged") while the upstream
	// call refreshes it; a copy past its stale window, or whose origin
	// forbade stale serving, is not served that way. A hard purge removes
	// them: such a request waits for the upstream (up to its timeout).
	// Use hard for content that must not be served from memory again,
	// even while the upstream is slow. Snapshots are marked stale either
	// way (kept for when the upstream fails). "soft" with all is refused.
	Mode string `json:"mode,omitempty"`
}

// The purge modes (PurgeRequest.Mode, App.PurgeMode).
const (
	purgeModeSoft = "soft"
	purgeModeHard = "hard"
)

// soft reports whether p is a soft purge when the app's default is def.
func (p *PurgeRequest) soft(def string) bool {
	if p.All {
		return false
	}
	mode := p.Mode
	if mode == "" {
		mode = def
	}
	return mode != purgeModeHard
}

// parsePurgeRequest decodes and validates a purge body, as the admin
// route and craftedge_purge accept it.
func parsePurgeRequest(body []byte) (*PurgeRequest, error) {
	var p PurgeRequest
	if err := decodeStrictJSON(body, &p); err != nil {
		return nil, err
	}
	if err := p.validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

// empty reports whether the request asks for nothing.
func (p *PurgeRequest) empty() bool {
	return !p.All && len(p.Tags) == 0 && len(p.URLs) == 0 && len(p.Prefixes) == 0 && len(p.Hosts) == 0
}

// maxPurgeEntry bounds one tag, URL, prefix or host of a purge: the
// snapshot store marks them under bbolt keys (at most 32 KiB, less the
// tag's prefix), and a purge must be refused whole before anything is
// purged, never half-applied.
const maxPurgeEntry = 16 << 10

// validate checks every entry before anything is purged.
func (p *PurgeRequest) validate() error {
	if p.empty() {
		return fmt.Errorf("nothing to purge: give tags, urls, prefixes, hosts or all:true")
	}
	switch p.Mode {
	case "", purgeModeHard:
	case purgeModeSoft:
		if p.All {
			return fmt.Errorf(`mode "soft" with all:true: purging all is always hard (give tags, urls, prefixes or hosts to purge softly)`)
		}
	default:
		return fmt.Errorf(`mode %q: want "soft" or "hard"`, p.Mode)
	}
	for _, list := range []struct {
		name    string
		entries []string
		url     bool
	}{{"tags", p.Tags, false}, {"urls", p.URLs, true}, {"prefixes", p.Prefixes, true}, {"hosts", p.Hosts, false}} {
		for i, entry := range list.entries {
			switch {
			case entry == "":
				return fmt.Errorf("%s[%d] is empty", list.name, i)
			case len(entry) > maxPurgeEntry:
				return fmt.Errorf("%s[%d] is %d bytes, more than %d", list.name, i, len(entry), maxPurgeEntry)
			}
			if list.url {
				if _, _, err := httpcache.KeyForURL(entry); err != nil {
					return fmt.Errorf("%s[%d]: %w", list.name, i, err)
				}
			}
		}
	}
	return nil
}

// purge removes memory copies at once (hard) or marks them stale (soft,
// see PurgeRequest.Mode), and marks snapshots stale (they are kept, to
// serve only when the live path fails). It returns how many memory
// entries were removed or marked.
func (a *App) purge(p *PurgeRequest, source string) (int, error) {
	return a.purgeLogged(p, source, nil)
}

// purgeLogged is purge on behalf of job (nil for none): its log line
// carries the job's fields (see purgeFor), and so does the cdn.purge job
// that forwards it to the CDN, if one is configured.
func (a *App) purgeLogged(p *PurgeRequest, source string, job *jobs.Ref) (int, error) {
	if err := p.validate(); err != nil {
		return 0, err
	}
	// The mode is settled here, before the fan-out: every node applies
	// this node's choice, whatever its own purge_mode.
	if p.soft(a.PurgeMode) {
		p.Mode = purgeModeSoft
	} else {
		p.Mode = purgeModeHard
	}
	now := nowFunc()
	// Every node of a cluster purges too (nothing without a cluster):
	// queued first, so the fan-out does not wait for this node's bbolt
	// commit (publishing never blocks, and goes ahead if that fails).
	a.publishPurge(p, source, now)
	n, err := a.applyPurge(p, now)
	if err != nil {
		return n, err
	}
	a.counters.purges.Add(1)
	initMetrics()
	metrics.purges.WithLabelValues(source).Inc()
	metrics.purgedEntries.Add(float64(n))
	fields := purgeLogFields(p, source, n)
	if job != nil {
		fields = append(fields, job.LogFields()...)
	}
	// Forwarded to the CDN by a durable job: the caller waits for the
	// enqueue's commit, never for the CDN.
	cdnJob, err := a.enqueueCDNPurge(p, source, job)
	if cdnJob != "" {
		fields = append(fields, zap.String("cdn_job", cdnJob))
	}
	a.logger.Info("purged", fields...)
	if err != nil {
		observeCDNEnqueueFailure(source)
		a.logger.Error("purge not forwarded to the CDN: the CDN keeps its copies until purged again",
			append(fields, zap.Error(err))...)
		return n, &cdnForwardError{err: err}
	}
	return n, nil
}

// applyPurge removes a validated purge's memory copies, or marks them
// stale when it is soft (its Mode, else the app's PurgeMode), and marks its
// snapshots stale as of now (a purge from another node passes its own
// time, so applying it twice marks the same time). It returns how many
// memory entries were removed or marked.
//
// The snapshots are marked first, then the memory tier is purged: a
// snapshot promoted into memory (the cache handler's fallback) is then
// either read after its marks, so promoted as a purged snapshot, never
// served in place of a slow upstream (pagecache.FlagPurgedSnapshot), or
// read before them under an epoch the memory purge moves, so stored as a
// purged snapshot by the memory tier, or removed (marked, when soft) by
// the memory purge. Marked the other way round, a snapshot read and
// promoted between the two steps was neither. The memory tier is purged
// even when the marks could not be written (a full disk): the error says
// so, and the purge is applied again by whoever retries it.
func (a *App) applyPurge(p *PurgeRequest, now time.Time) (int, error) {
	purgeRefillMu.RLock() // see purgeRefillMu
	defer purgeRefillMu.RUnlock()
	err := a.markPurged(p, now)
	if hook := purgeStepHook.Load(); hook != nil {
		(*hook)()
	}
	return a.purgeMemory(p), err
}

// purgeStepHook, when set (tests), is called between applyPurge's two
// steps: after the snapshots were marked, before the memory tier is
// purged.
var purgeStepHook atomic.Pointer[func()]

// OnPurgeStep makes every purge call f between its two steps (see
// applyPurge); nil stops it. End-to-end tests of the module packages use
// it to land a request in that gap.
func OnPurgeStep(f func()) {
	if f == nil {
		purgeStepHook.Store(nil)
		return
	}
	purgeStepHook.Store(&f)
}

// markPurged marks the snapshots a validated purge selects stale as of
// now; it marks every kind it can and reports what failed.
func (a *App) markPurged(p *PurgeRequest, now time.Time) error {
	var errs []error
	if p.All {
		errs = append(errs, a.store.MarkPurgedAll(now))
	}
	marks := make([]string, 0, len(p.Tags)+len(p.URLs)+len(p.Hosts))
	marks = append(marks, p.Tags...)
	for _, u := range p.URLs {
		pathKey, _, _ := httpcache.KeyForURL(u)
		marks = append(marks, pagecache.URLTag(pathKey))
	}
	for _, host := range p.Hosts {
		marks = append(marks, pagecache.HostTag(host))
	}
	if len(marks) > 0 {
		errs = append(errs, a.store.MarkPurged(marks, now))
	}
	if len(p.Prefixes) > 0 {
		prefixes := make([]string, 0, len(p.Prefixes))
		for _, pre := range p.Prefixes {
			pathKey, _, _ := httpcache.KeyForURL(pre)
			prefixes = append(prefixes, pathKey)
		}
		errs = append(errs, a.store.MarkPurgedPrefixes(prefixes, now))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("marking snapshots stale: %w", err)
	}
	return nil
}

// purgeMemory removes (hard) or marks stale (soft) the memory copies a
// validated purge selects and returns how many.
func (a *App) purgeMemory(p *PurgeRequest) int {
	n := 0
	if p.All {
		n += a.memory.PurgeAll()
	}
	mem := memoryPurger(a.memory, p.soft(a.PurgeMode))
	if len(p.Tags) > 0 {
		n += mem.tags(p.Tags)
	}
	for _, u := range p.URLs {
		pathKey, fullKey, _ := httpcache.KeyForURL(u)
		n += mem.url(pathKey, fullKey)
	}
	for _, host := range p.Hosts {
		n += mem.host(host)
	}
	for _, pre := range p.Prefixes {
		pathKey, _, _ := httpcache.KeyForURL(pre)
		n += mem.prefix(pathKey)
	}
	return n
}

// memPurge is the memory tier's purge of one mode.
type memPurge struct {
	tags   func([]string) int
	url    func(pathKey, fullKey string) int
	host   func(string) int
	prefix func(string) int
}

// memoryPurger returns the soft or the hard purges of mem.
func memoryPurger(mem *pagecache.Cache, soft bool) memPurge {
	if soft {
		return memPurge{mem.SoftPurgeTags, mem.SoftPurgeURL, mem.SoftPurgeHost, mem.SoftPurgePrefix}
	}
	return memPurge{mem.PurgeTags, mem.PurgeURL, mem.PurgeHost, mem.PurgePrefix}
}

// purgeLogFields are the fields of a "purged" log line.
func purgeLogFields(p *PurgeRequest, source string, n int) []zap.Field {
	fields := make([]zap.Field, 0, 20)
	fields = append(fields, zap.String("source", source))
	fields = appendSample(fields, "tags", p.Tags)
	fields = appendSample(fields, "urls", p.URLs)
	fields = appendSample(fields, "prefixes", p.Prefixes)
	fields = appendSample(fields, "hosts", p.Hosts)
	mode := p.Mode
	if p.All {
		mode = purgeModeHard
	}
	return append(fields, zap.Bool("all", p.All), zap.String("mode", mode), zap.Int("entries", n))
}

// cdnForwardError is purgeLogged's error when the local purge succeeded
// but its cdn.purge job could not be enqueued. Requests answer with the
// local result (and a cdn_error); jobs fail, so their retry purges again.
type cdnForwardError struct{ err error }

func (e *cdnForwardError) Error() string {
	return "forwarding the purge to the CDN: " + e.err.Error()
}

func (e *cdnForwardError) Unwrap() error { return e.err }

// cdnForwardFailed reports whether err is only a failed CDN forwarding
// (the local purge was done).
func cdnForwardFailed(err error) bool {
	var cf *cdnForwardError
	return errors.As(err, &cf)
}

// purgeTags is the purge used by Cache-Purge-Tag responses (in the app's
// PurgeMode) and Cache-Purge-Tag-Hard ones (hard).
func (a *App) purgeTags(tags []string, hard bool) int {
	p := &PurgeRequest{Tags: tags}
	if hard {
		p.Mode = purgeModeHard
	}
	n, err := a.purge(p, "upstream_header")
	if err != nil && !cdnForwardFailed(err) { // that one is logged by purgeLogged
		a.logger.Error("purging tags", zap.Strings("tags", tags), zap.Error(err))
	}
	return n
}

// logSample is how many tags (URLs, prefixes, hosts) a "purged" line
// lists: a sync page purges one tag per record, and a line listing them
// all is too long to read or index.
const logSample = 10

// appendSample appends key (the first logSample of vs) and key_total (how
// many there are).
func appendSample(fields []zap.Field, key string, vs []string) []zap.Field {
	return append(fields, zap.Strings(key, vs[:min(len(vs), logSample)]), zap.Int(key+"_total", len(vs)))
}
