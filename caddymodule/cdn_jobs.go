package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/craftedge/craftedge/jobs"
	"github.com/craftedge/craftedge/vendors"
)

// jobKindCDNPurge forwards one craftedge purge to the downstream CDN.
const jobKindCDNPurge = "cdn.purge"

// Limits of CDN API calls.
const (
	// cdnMaxRetryAfter caps a CDN's Retry-After, so a bogus value cannot
	// park a purge for days.
	cdnMaxRetryAfter = time.Hour
	// cdnMaxErrorBody is how much of an error answer is read (a snippet
	// of it goes into the job's error).
	cdnMaxErrorBody = 64 << 10
	cdnSnippetLen   = 256
)

func init() {
	registerJobKind(jobKindCDNPurge, jobs.KindConfig{
		Concurrency: 2, BaseBackoff: time.Second, MaxBackoff: 5 * time.Minute,
		MaxAttempts: 12, Timeout: 2 * time.Minute,
	}, func(a *App) jobs.Handler { return jobs.Single(a.runCDNPurge) })
}

// cdnPurgePayload is the payload of a cdn.purge job: what one craftedge
// purge removed, to be removed at the CDN too.
type cdnPurgePayload struct {
	// Provider is the CDN provider configured when the purge happened.
	Provider string `json:"provider"`
	// Source is the purge's source (admin, upstream_header, remote,
	// vendor_sync, outbox, webhook).
	Source   string   `json:"source"`
	Tags     []string `json:"tags,omitempty"`
	URLs     []string `json:"urls,omitempty"`
	Prefixes []string `json:"prefixes,omitempty"`
	Hosts    []string `json:"hosts,omitempty"`
	All      bool     `json:"all,omitempty"`
	// CausedBy is the id of the job whose purge this forwards (a
	// refetch, sync or outbox write), if any.
	CausedBy string `json:"caused_by,omitempty"`
}

// cdnPurgeProgress is the context a cdn.purge job saves: how many of its
// API calls (a purge of many tags takes several) were sent.
type cdnPurgeProgress struct {
	Sent int `json:"sent"`
}

// enqueueCDNPurge accepts a cdn.purge job for p (durable when it
// returns) and returns its id; "" when no CDN is configured. job is the
// job that purged, if any: the CDN job carries its request id.
func (a *App) enqueueCDNPurge(p *PurgeRequest, source string, job *jobs.Ref) (string, error) {
	if a.cdn == nil || a.jobs == nil {
		return "", nil
	}
	if takeFault(&cdnEnqueueFaults) {
		return "", errors.New("jobs: enqueue cdn.purge: injected fault")
	}
	payload := cdnPurgePayload{Provider: a.cdn.name, Source: source, Tags: p.Tags, URLs: p.URLs,
		Prefixes: p.Prefixes, Hosts: p.Hosts, All: p.All}
	req := jobs.EnqueueRequest{Kind: jobKindCDNPurge}
	if job != nil {
		payload.CausedBy = job.ID
		req.Correlation = job.Correlation
	}
	b, err := json.Marshal(payload)
	if err != nil {
		return "", err
	}
	req.Payload = b
	// Not the caller's context: a purge accepted while its config is
	// being replaced still reaches the CDN.
	j, _, err := a.jobs.Enqueue(context.WithoutCancel(a.ctx), req)
	if err != nil {
		return "", err
	}
	return j.ID, nil
}

// cdnEnqueueFaults, when positive, fails that many upcoming cdn.purge
// enqueues. Set by tests only: a failed commit of the bbolt file (a full
// disk, an I/O error) cannot be produced on demand with a real file.
var cdnEnqueueFaults atomic.Int32

// takeFault consumes one fault of c, if any is left.
func takeFault(c *atomic.Int32) bool {
	for {
		n := c.Load()
		if n <= 0 {
			return false
		}
		if c.CompareAndSwap(n, n-1) {
			return true
		}
	}
}

// cdnPurgedAll remembers, per CDN, when the last purge-all that the CDN
// accepted was sent: a purge accepted before it has nothing left to
// remove. Process memory only: after a restart such purges are just sent.
var cdnPurgedAll = struct {
	sync.Mutex
	at map[string]time.Time
}{at: map[string]time.Time{}}

func cdnPurgedAllSince(key string, created time.Time) bool {
	cdnPurgedAll.Lock()
	defer cdnPurgedAll.Unlock()
	at, ok := cdnPurgedAll.at[key]
	return ok && created.Before(at)
}

func recordCDNPurgedAll(key string, sentAt time.Time) {
	cdnPurgedAll.Lock()
	defer cdnPurgedAll.Unlock()
	if sentAt.After(cdnPurgedAll.at[key]) {
		cdnPurgedAll.at[key] = sentAt
	}
}

// runCDNPurge sends one forwarded purge to the CDN.
func (a *App) runCDNPurge(ctx context.Context, t *jobs.Task) error {
	var p cdnPurgePayload
	if err := json.Unmarshal(t.Job.Payload, &p); err != nil {
		return jobs.Permanent(fmt.Errorf("cdn.purge: bad payload: %w", err))
	}
	target := a.cdn
	if target == nil {
		return jobs.Permanent(errors.New("cdn.purge: no cdn is configured (configure one and replay the dead letters, or flush them)"))
	}
	fields := append(jobLogFields(ctx), zap.String("provider", target.name), zap.String("source", p.Source))
	if cdnPurgedAllSince(target.key, t.Job.CreatedAt) {
		a.logger.Info("cdn purge superseded by a later purge-all", fields...)
		return nil
	}
	calls, skipped, err := target.provider.PurgeCalls(&PurgeRequest{Tags: p.Tags, URLs: p.URLs,
		Prefixes: p.Prefixes, Hosts: p.Hosts, All: p.All})
	if err != nil {
		return jobs.Permanent(fmt.Errorf("cdn.purge: %w", err))
	}
	if len(skipped) > 0 {
		a.logger.Warn("cdn purge: provider cannot purge these; skipped", append(fields, zap.Strings("skipped", skipped))...)
	}
	var progress cdnPurgeProgress
	if len(t.Job.Context) > 0 {
		if err := json.Unmarshal(t.Job.Context, &progress); err != nil || progress.Sent < 0 || progress.Sent > len(calls) {
			progress = cdnPurgeProgress{}
		}
	}
	started := nowFunc()
	for i := progress.Sent; i < len(calls); i++ {
		if err := target.send(ctx, calls[i]); err != nil {
			return err
		}
		if i+1 < len(calls) {
			progress.Sent = i + 1
			b, _ := json.Marshal(progress)
			if err := t.SaveContext(b); err != nil {
				return err
			}
		}
	}
	if p.All {
		recordCDNPurgedAll(target.key, started)
	}
	a.logger.Info("purged at the cdn", append(fields, zap.Strings("tags", p.Tags), zap.Strings("urls", p.URLs),
		zap.Strings("prefixes", p.Prefixes), zap.Strings("hosts", p.Hosts), zap.Bool("all", p.All),
		zap.Int("requests", len(calls)-progress.Sent))...)
	return nil
}

// send performs one API call and maps its outcome to the job queue's
// retry policy: 2xx done; 429 retried after its Retry-After; 408, 5xx
// and transport errors retried with backoff; other answers permanent
// (dead letter). Errors name the call and carry a redacted snippet of
// the answer, never the token.
func (t *cdnTarget) send(ctx context.Context, c CDNCall) error {
	provider := t.name
	var body io.Reader
	if c.Body != nil {
		body = bytes.NewReader(c.Body)
	}
	req, err := http.NewRequestWithContext(ctx, c.Method, c.URL, body)
	if err != nil {
		observeCDNRequest(provider, cdnOutcomeFailed)
		return jobs.Permanent(fmt.Errorf("cdn %s: %s: %v", provider, c.What, err))
	}
	req.Header = c.Header.Clone()
	if req.Header == nil {
		req.Header = http.Header{}
	}
	resp, err := t.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("cdn %s: %s: %w", provider, c.What, ctx.Err())
		}
		// url.Error repeats the URL; keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		observeCDNRequest(provider, cdnOutcomeRetry)
		return fmt.Errorf("cdn %s: %s: %v", provider, c.What, err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, cdnMaxErrorBody))
	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300:
		if c.Check != nil {
			if err := c.Check(answer); err != nil {
				observeCDNRequest(provider, cdnOutcomeRetry)
				return fmt.Errorf("cdn %s: %s: %d but %v: %s", provider, c.What, code, err, t.snippet(answer))
			}
		}
		observeCDNRequest(provider, cdnOutcomeOK)
		return nil
	case code == http.StatusTooManyRequests:
		observeCDNRequest(provider, cdnOutcomeRetry)
		err := fmt.Errorf("cdn %s: %s: %d: %s", provider, c.What, code, t.snippet(answer))
		if d, ok := parseCDNRetryAfter(resp.Header.Get("Retry-After"), nowFunc()); ok {
			return jobs.RetryAfter(err, min(d, cdnMaxRetryAfter))
		}
		return err
	case code == http.StatusRequestTimeout || code >= 500:
		observeCDNRequest(provider, cdnOutcomeRetry)
		return fmt.Errorf("cdn %s: %s: %d: %s", provider, c.What, code, t.snippet(answer))
	default:
		observeCDNRequest(provider, cdnOutcomeFailed)
		return jobs.Permanent(fmt.Errorf("cdn %s: %s: %d: %s", provider, c.What, code, t.snippet(answer)))
	}
}

// snippet returns the start of an answer, printable, with the target's
// credentials redacted.
func (t *cdnTarget) snippet(body []byte) string {
	s := vendors.Snippet(body, t.provider.Secrets(), cdnSnippetLen)
	if s == "" {
		s = "(empty answer)"
	}
	return s
}

// parseCDNRetryAfter reads a Retry-After value: delay-seconds or an HTTP
// date.
func parseCDNRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		return time.Duration(min(secs, int64(cdnMaxRetryAfter/time.Second))) * time.Second, true
	}
	if at, err := http.ParseTime(v); err == nil {
		return max(at.Sub(now), 0), true
	}
	return 0, false
}
