package cluster

import (
	"context"
	"sync"
	"time"
)

// latestQueue holds what waits in memory to be published while NATS is
// slow or unreachable: the latest value per key (a newer value replaces
// the waiting one), in the order keys were first queued. The read model
// and the shared snapshots use it; their bounds differ (see putIf and
// trim).
type latestQueue[T any] struct {
	mu    sync.Mutex
	items map[string]latestItem[T]
	order []string // keys in queueing order; may hold keys since removed
	bytes int64
	next  uint64

	sig     chan struct{} // something was queued (capacity 1)
	removed chan struct{} // something was published (capacity 1)
}

type latestItem[T any] struct {
	v    T
	id   uint64
	size int64
}

func newLatestQueue[T any]() *latestQueue[T] {
	return &latestQueue[T]{items: map[string]latestItem[T]{}, sig: make(chan struct{}, 1), removed: make(chan struct{}, 1)}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// putIf queues v (size bytes) under key if admit, told the queue's length
// and bytes after the put and whether key was queued already, agrees.
func (q *latestQueue[T]) putIf(key string, v T, size int64, admit func(n int, bytes int64, had bool) bool) bool {
	q.mu.Lock()
	old, had := q.items[key]
	n, bytes := len(q.items), q.bytes-old.size+size
	if !had {
		n++
	}
	if admit != nil && !admit(n, bytes, had) {
		q.mu.Unlock()
		return false
	}
	q.next++
	if !had {
		q.order = append(q.order, key)
	}
	q.items[key] = latestItem[T]{v: v, id: q.next, size: size}
	q.bytes = bytes
	q.mu.Unlock()
	signal(q.sig)
	return true
}

// trim drops the oldest queued keys until at most max remain, but never
// keep; it returns how many it dropped.
func (q *latestQueue[T]) trim(max int, keep string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	dropped := 0
	for i := 0; len(q.items) > max && i < len(q.order); {
		k := q.order[i]
		it, ok := q.items[k]
		switch {
		case !ok:
			q.order = append(q.order[:i], q.order[i+1:]...)
		case k == keep:
			i++
		default:
			delete(q.items, k)
			q.bytes -= it.size
			q.order = append(q.order[:i], q.order[i+1:]...)
			dropped++
		}
	}
	return dropped
}

// head returns the oldest queued key and its value.
func (q *latestQueue[T]) head() (string, latestItem[T], bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.order) > 0 {
		k := q.order[0]
		if it, ok := q.items[k]; ok {
			return k, it, true
		}
		q.order = q.order[1:] // dropped or published meanwhile
	}
	return "", latestItem[T]{}, false
}

// done removes key after its value it was published, unless a newer
// value replaced it meanwhile (that one is published next).
func (q *latestQueue[T]) done(key string, it latestItem[T]) {
	q.mu.Lock()
	if cur, ok := q.items[key]; ok && cur.id == it.id {
		delete(q.items, key)
		q.bytes -= it.size
		if len(q.order) > 0 && q.order[0] == key {
			q.order = q.order[1:]
		}
	}
	q.mu.Unlock()
	signal(q.removed)
}

func (q *latestQueue[T]) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

// next waits for the oldest queued value, or until ctx ends (false).
func (q *latestQueue[T]) wait(ctx context.Context) (string, latestItem[T], bool) {
	for {
		if k, it, ok := q.head(); ok {
			return k, it, true
		}
		select {
		case <-ctx.Done():
			return "", latestItem[T]{}, false
		case <-q.sig:
		}
	}
}

// flush waits until the queue is empty, or ctx ends.
func (q *latestQueue[T]) flush(ctx context.Context) error {
	for q.len() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-q.removed:
		case <-time.After(50 * time.Millisecond): // a drop removes too
		}
	}
	return nil
}

// background runs a data-sharing part's sessions (Node.sessions) in a
// goroutine until stop.
type background struct {
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

func (n *Node) background(what string, session func(context.Context) error) *background {
	b := &background{done: make(chan struct{})}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	go func() {
		defer close(b.done)
		n.sessions(b.ctx, what, session)
	}()
	return b
}

// stop ends the sessions and waits for them (idempotent).
func (b *background) stop() {
	b.cancel()
	<-b.done
}
