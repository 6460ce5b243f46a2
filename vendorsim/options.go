package vendorsim

import (
	"context"
	"net/http"
	"time"
)

// API names one of the simulated vendor APIs.
type API string

// The simulated APIs.
const (
	// APICommerce is the e-commerce product API (/v2/products).
	APICommerce API = "commerce"
	// APICRM is the CRM contact API (/v1/contacts).
	APICRM API = "crm"
)

// Kind names a kind of record.
type Kind string

// The record kinds, one per API.
const (
	// KindProduct is a product of APICommerce.
	KindProduct Kind = "product"
	// KindContact is a contact of APICRM.
	KindContact Kind = "contact"
)

// Default bearer tokens, used when Options leaves them empty.
const (
	DefaultCommerceToken = "sim-commerce-token"
	DefaultCRMToken      = "sim-crm-token"
)

// DefaultWebhookTimeout bounds one webhook delivery when
// Options.WebhookTimeout is zero.
const DefaultWebhookTimeout = 5 * time.Second

// DefaultSeedTime is the updated timestamp of the first seeded record when
// Options.SeedTime is zero.
var DefaultSeedTime = time.Date(2025, time.January, 1, 0, 0, 0, 0, time.UTC)

// Options configures a Sim. The zero value is a valid, empty simulator.
type Options struct {
	// Products and Contacts are how many records to seed. Product ids are
	// "1".."Products", contact ids "c-1".."c-Contacts"; every seeded record
	// is at version 1. Record i of a kind is updated at SeedTime + i seconds.
	Products int
	Contacts int
	// Seed seeds every random choice: seed data, jitter, error, throttle and
	// webhook drop rolls, webhook delivery ids. Two Sims with the same
	// options hold the same data.
	Seed int64
	// SeedTime is the base of the seeded records' timestamps. Zero means
	// DefaultSeedTime.
	SeedTime time.Time
	// Now is the clock for updated timestamps and webhook signatures. Nil
	// means time.Now.
	Now func() time.Time
	// Sleep waits d or until ctx is done, returning ctx.Err() in the latter
	// case. It implements the latency knob. Nil means a real timer.
	Sleep func(ctx context.Context, d time.Duration) error
	// CommerceToken and CRMToken are the bearer tokens each API accepts.
	// Empty means DefaultCommerceToken and DefaultCRMToken.
	CommerceToken string
	CRMToken      string
	// IndexToken is the bearer token of the search index API (index.go).
	// Empty means DefaultIndexToken.
	IndexToken string
	// HTTPClient sends webhooks. Nil means a client without a timeout of its
	// own (WebhookTimeout bounds each delivery).
	HTTPClient *http.Client
	// WebhookTimeout bounds one webhook delivery. Zero means
	// DefaultWebhookTimeout.
	WebhookTimeout time.Duration
}

// withDefaults returns o with its zero fields filled in.
func (o Options) withDefaults() Options {
	if o.SeedTime.IsZero() {
		o.SeedTime = DefaultSeedTime
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Sleep == nil {
		o.Sleep = sleepContext
	}
	if o.CommerceToken == "" {
		o.CommerceToken = DefaultCommerceToken
	}
	if o.CRMToken == "" {
		o.CRMToken = DefaultCRMToken
	}
	if o.IndexToken == "" {
		o.IndexToken = DefaultIndexToken
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{}
	}
	if o.WebhookTimeout <= 0 {
		o.WebhookTimeout = DefaultWebhookTimeout
	}
	return o
}

// sleepContext waits d or until ctx is done.
func sleepContext(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
