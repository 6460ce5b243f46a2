package vendorsim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/craftedge/craftedge/webhook"
)

// Event is the JSON body of a webhook: {"type":"product.updated","id":"3",
// "version":8}. Types are "<kind>.created", "<kind>.updated" and
// "<kind>.deleted".
type Event struct {
	Type    string `json:"type"`
	ID      string `json:"id"`
	Version int    `json:"version"`
}

// WebhookDelivery records one webhook the Sim sent or dropped.
type WebhookDelivery struct {
	// Seq is the delivery's 1-based position in the record.
	Seq int
	// Target is the URL; DeliveryID the id passed to webhook.Config.Sign
	// (sent by the "standard" and "shopify" schemes).
	Target     string
	DeliveryID string
	Event      Event
	// Auto reports a delivery to a registered target (as opposed to
	// SendWebhook); Dropped one the drop rate swallowed (nothing was sent).
	Auto    bool
	Dropped bool
	// Status is the target's response status, 0 if there was none; Err the
	// signing or transport error, if any.
	Status int
	Err    error
	// At is the Sim's clock when the delivery was decided.
	At time.Time
}

// webhookTarget is a registered receiver.
type webhookTarget struct {
	url string
	cfg webhook.Config
}

// webhooks is the Sim's outgoing webhook state.
type webhooks struct {
	sim   *Sim
	rng   *lockedRand
	nonce string // distinguishes delivery ids of differently seeded Sims

	mu       sync.Mutex
	targets  []webhookTarget
	dropRate float64
	log      []WebhookDelivery
	seq      int
}

func newWebhooks(s *Sim) *webhooks {
	rng := newRand(s.opts.Seed, streamWebhooks)
	return &webhooks{sim: s, rng: rng, nonce: strconv.FormatUint(uint64(rng.Int64N(math.MaxInt64)), 36)}
}

// AddWebhookTarget registers url to receive an event, signed with cfg, for
// every change. cfg is validated here.
func (s *Sim) AddWebhookTarget(url string, cfg webhook.Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("vendorsim: webhook target %s: %w", url, err)
	}
	cfg.Secrets = append([]string(nil), cfg.Secrets...)
	h := s.hooks
	h.mu.Lock()
	defer h.mu.Unlock()
	h.targets = append(h.targets, webhookTarget{url: url, cfg: cfg})
	return nil
}

// ClearWebhookTargets unregisters every target.
func (s *Sim) ClearWebhookTargets() {
	h := s.hooks
	h.mu.Lock()
	defer h.mu.Unlock()
	h.targets = nil
}

// SetWebhookDropRate sets the fraction (0..1) of automatic deliveries that
// are silently dropped. SendWebhook is never dropped.
func (s *Sim) SetWebhookDropRate(rate float64) error {
	if err := validDropRate(rate); err != nil {
		return err
	}
	h := s.hooks
	h.mu.Lock()
	defer h.mu.Unlock()
	h.dropRate = rate
	return nil
}

// WebhookDropRate returns the current drop rate.
func (s *Sim) WebhookDropRate() float64 {
	h := s.hooks
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.dropRate
}

func validDropRate(rate float64) error {
	if math.IsNaN(rate) || rate < 0 || rate > 1 {
		return fmt.Errorf("vendorsim: webhook drop rate %v is not a fraction in 0..1", rate)
	}
	return nil
}

// Webhooks returns every delivery sent or dropped so far, in order.
func (s *Sim) Webhooks() []WebhookDelivery {
	h := s.hooks
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]WebhookDelivery(nil), h.log...)
}

// ResetWebhooks empties the delivery record.
func (s *Sim) ResetWebhooks() {
	h := s.hooks
	h.mu.Lock()
	defer h.mu.Unlock()
	h.log = nil
}

// WaitWebhooks blocks until no background delivery (from API writes) is in
// flight.
func (s *Sim) WaitWebhooks() { s.inflight.wait() }

// SendWebhook posts event to target, signed with cfg at Options.Now, and
// returns the target's status. Any response, 2xx or not, is a nil error;
// errors are signing or transport failures. The delivery is recorded in
// Webhooks.
func (s *Sim) SendWebhook(ctx context.Context, target string, cfg webhook.Config, event Event) (int, error) {
	return s.hooks.send(ctx, webhookTarget{url: target, cfg: cfg}, event, false)
}

// next reserves a delivery sequence number and id.
func (h *webhooks) next() (int, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seq++
	return h.seq, fmt.Sprintf("msg_%s_%d", h.nonce, h.seq)
}

func (h *webhooks) record(d WebhookDelivery) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.log = append(h.log, d)
}

// send signs and posts one delivery and records it.
func (h *webhooks) send(ctx context.Context, t webhookTarget, ev Event, auto bool) (int, error) {
	seq, id := h.next()
	now := h.sim.now()
	d := WebhookDelivery{Seq: seq, Target: t.url, DeliveryID: id, Event: ev, Auto: auto, At: now}
	d.Status, d.Err = h.post(ctx, t, ev, id, now)
	h.record(d)
	return d.Status, d.Err
}

func (h *webhooks) post(ctx context.Context, t webhookTarget, ev Event, id string, now time.Time) (int, error) {
	body, err := json.Marshal(ev)
	if err != nil {
		return 0, fmt.Errorf("vendorsim: encoding webhook event: %w", err)
	}
	req := webhook.Request{
		Method: http.MethodPost,
		URL:    t.url,
		Header: http.Header{"Content-Type": {"application/json"}},
		Body:   body,
	}
	if err := t.cfg.Sign(&req, id, now); err != nil {
		return 0, fmt.Errorf("vendorsim: signing webhook to %s: %w", t.url, err)
	}
	ctx, cancel := context.WithTimeout(ctx, h.sim.opts.WebhookTimeout)
	defer cancel()
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("vendorsim: webhook request to %s: %w", t.url, err)
	}
	hr.Header = req.Header
	resp, err := h.sim.opts.HTTPClient.Do(hr)
	if err != nil {
		return 0, fmt.Errorf("vendorsim: posting webhook to %s: %w", t.url, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, nil
}

// notify delivers ev to every registered target, in order, dropping each
// delivery with the drop rate. It returns when all are done.
func (h *webhooks) notify(ctx context.Context, ev Event) {
	h.mu.Lock()
	targets := append([]webhookTarget(nil), h.targets...)
	rate := h.dropRate
	h.mu.Unlock()
	for _, t := range targets {
		if h.rng.hit(rate) {
			seq, id := h.next()
			h.record(WebhookDelivery{Seq: seq, Target: t.url, DeliveryID: id, Event: ev, Auto: true, Dropped: true, At: h.sim.now()})
			continue
		}
		_, _ = h.send(ctx, t, ev, true)
	}
}

// notifyAsync is notify in the background, tracked by WaitWebhooks and
// cancelled by Close. Deliveries of different changes may arrive in any
// order, as with real vendors.
func (h *webhooks) notifyAsync(ev Event) {
	h.mu.Lock()
	none := len(h.targets) == 0
	h.mu.Unlock()
	if none || !h.sim.inflight.add() {
		return
	}
	go func() {
		defer h.sim.inflight.done()
		h.notify(h.sim.ctx, ev)
	}()
}

// inflight counts background work; unlike sync.WaitGroup it allows add
// and wait to race, and refuses new work once closed.
type inflight struct {
	mu     sync.Mutex
	cond   *sync.Cond
	n      int
	closed bool
}

func (f *inflight) init() {
	if f.cond == nil {
		f.cond = sync.NewCond(&f.mu)
	}
}

// add registers one unit of work; it reports false once close was called.
func (f *inflight) add() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	if f.closed {
		return false
	}
	f.n++
	return true
}

func (f *inflight) done() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	f.n--
	if f.n == 0 {
		f.cond.Broadcast()
	}
}

// wait blocks until no work is registered.
func (f *inflight) wait() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	for f.n > 0 {
		f.cond.Wait()
	}
}

// close refuses further work and waits for the rest.
func (f *inflight) close() {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	f.wait()
}
