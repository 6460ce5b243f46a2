package vendors

import (
	"context"
	"sync"
)

// coalescer makes identical concurrent GETs share one upstream call. It is
// singleflight with reference-counted cancellation: the shared call runs
// under a context detached from any one caller and is cancelled only when
// every caller waiting for it has gone. (golang.org/x/sync/singleflight
// runs the call under the first caller's context, so that caller leaving
// would fail everyone else; detached, nobody leaving would cancel it.)
type coalescer struct {
	mu      sync.Mutex
	flights map[string]*flight
}

// flight is one shared call.
type flight struct {
	done   chan struct{} // closed when resp and err are set
	resp   *rawResponse
	err    error
	refs   int // callers waiting; guarded by coalescer.mu
	cancel context.CancelFunc
}

// do runs fn once for all concurrent callers with the same key and returns
// its result to each; shared reports whether this caller joined a call
// another caller started. fn's context keeps the first caller's values and
// deadline (so a token wait that cannot finish in time fails fast; callers
// joining later share that deadline) but not its cancellation: it is
// cancelled when the last waiting caller leaves. A caller whose ctx ends
// returns ctx.Err() at once.
func (g *coalescer) do(ctx context.Context, key string, fn func(context.Context) (*rawResponse, error)) (resp *rawResponse, shared bool, err error) {
	g.mu.Lock()
	if g.flights == nil {
		g.flights = make(map[string]*flight)
	}
	f, shared := g.flights[key]
	if shared {
		f.refs++
	} else {
		fctx, cancel := detach(ctx)
		f = &flight{done: make(chan struct{}), refs: 1, cancel: cancel}
		g.flights[key] = f
		go func() {
			f.resp, f.err = fn(fctx)
			g.mu.Lock()
			if g.flights[key] == f {
				delete(g.flights, key)
			}
			g.mu.Unlock()
			cancel()
			close(f.done)
		}()
	}
	g.mu.Unlock()

	select {
	case <-f.done:
		g.release(key, f)
		return f.resp, shared, f.err
	case <-ctx.Done():
		g.release(key, f)
		return nil, shared, ctx.Err()
	}
}

// release drops a caller's reference; the last one cancels a call still
// running and forgets it, so a later caller starts afresh.
func (g *coalescer) release(key string, f *flight) {
	g.mu.Lock()
	defer g.mu.Unlock()
	f.refs--
	if f.refs == 0 {
		f.cancel()
		if g.flights[key] == f {
			delete(g.flights, key)
		}
	}
}

// waiters returns the number of callers waiting on all flights (for tests).
func (g *coalescer) waiters() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, f := range g.flights {
		n += f.refs
	}
	return n
}

// detach returns a context with ctx's values and deadline but not its
// cancellation.
func detach(ctx context.Context) (context.Context, context.CancelFunc) {
	base := context.WithoutCancel(ctx)
	if dl, ok := ctx.Deadline(); ok {
		return context.WithDeadline(base, dl)
	}
	return context.WithCancel(base)
}
