package caddymodule

import "sync"

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
