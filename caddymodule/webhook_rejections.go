package caddymodule

import (
	"net/http"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// webhookRejectionRing is how many recent rejections the status page
// shows.
const webhookRejectionRing = 50

// webhookRejections keeps the most recent rejected webhooks (and remote
// purges) of the process for the status page. Entries hold no secret,
// signature or body: the reason, the error text of the webhook package
// (which names headers only) and the sender's address.
var webhookRejections rejectionRing

type rejectionRing struct {
	mu    sync.Mutex
	items [webhookRejectionRing]StatusWebhookRejection
	next  int
	n     int
}

func (r *rejectionRing) add(e StatusWebhookRejection) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.items[r.next] = e
	r.next = (r.next + 1) % len(r.items)
	if r.n < len(r.items) {
		r.n++
	}
}

// recent returns the entries newest first (never nil).
func (r *rejectionRing) recent() []StatusWebhookRejection {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]StatusWebhookRejection, 0, r.n)
	for i := 1; i <= r.n; i++ {
		out = append(out, r.items[(r.next-i+len(r.items))%len(r.items)])
	}
	return out
}

// reset empties the ring (tests).
func (r *rejectionRing) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.next, r.n = 0, 0
}

// StatusWebhookRejection is a recently refused webhook or remote purge
// (the status page lists them): never a secret, signature or body.
type StatusWebhookRejection struct {
	At time.Time `json:"at"`
	// Source is the vendor, "unknown" or "craftedge_purge".
	Source string `json:"source"`
	// Reason is the label of craftedge_webhooks_rejected_total.
	Reason string `json:"reason"`
	// Status is the HTTP status answered.
	Status int `json:"status"`
	// Detail is the error, naming headers or fields but no values.
	Detail    string `json:"detail,omitempty"`
	RemoteIP  string `json:"remote_ip,omitempty"`
	RequestID string `json:"request_id,omitempty"`
}

// RecentWebhookRejections returns the process's most recent rejected
// webhooks and remote purges, newest first (never nil).
func RecentWebhookRejections() []StatusWebhookRejection { return webhookRejections.recent() }

// RemoteIP is the client address Caddy determined (trusted proxies
// applied), else the connection's peer.
func RemoteIP(r *http.Request) string { return remoteIP(r) }

func remoteIP(r *http.Request) string {
	if v, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && v != "" {
		return v
	}
	return r.RemoteAddr
}
