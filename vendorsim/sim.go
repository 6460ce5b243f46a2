package vendorsim

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// ErrNotFound is returned (wrapped) for an unknown record id.
var ErrNotFound = errors.New("vendorsim: record not found")

// ErrUnknownKind is returned (wrapped) for a Kind that is not simulated.
var ErrUnknownKind = errors.New("vendorsim: unknown record kind")

// Sim is a simulated pair of vendors: their records, idempotency keys,
// write log and webhooks. Its methods are safe for concurrent use. Serve it
// with Handler or Start (both APIs on one endpoint, the default endpoint),
// or through further endpoints from NewEndpoint. Create it with New.
type Sim struct {
	opts Options

	mu          sync.Mutex
	data        map[Kind]*collection
	idem        map[Kind]map[string]*idemEntry
	writes      []Write
	writeSeq    int
	endpointSeq uint64
	servers     map[*Server]struct{}
	closed      bool

	hooks    *webhooks
	index    *searchIndex // the search index API (index.go)
	def      *Endpoint
	ctx      context.Context // cancelled by Close; bounds background work
	cancel   context.CancelFunc
	done     chan struct{} // closed by Close; releases hung requests
	inflight inflight      // background webhook deliveries
}

// New returns a Sim seeded according to opts.
func New(opts Options) *Sim {
	opts = opts.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Sim{
		opts:    opts,
		data:    make(map[Kind]*collection),
		idem:    make(map[Kind]map[string]*idemEntry),
		servers: make(map[*Server]struct{}),
		ctx:     ctx,
		cancel:  cancel,
		done:    make(chan struct{}),
	}
	s.hooks = newWebhooks(s)
	s.index = newSearchIndex()
	s.seed(commerceSpec, opts.Products, streamProducts, seedProduct)
	s.seed(crmSpec, opts.Contacts, streamContacts, seedContact)
	s.def = s.NewEndpoint()
	return s
}

// seed fills spec's collection with n deterministic records.
func (s *Sim) seed(spec *apiSpec, n int, stream uint64, gen func(*lockedRand, int) map[string]any) {
	c := newCollection(spec)
	r := newRand(s.opts.Seed, stream)
	for i := 1; i <= n; i++ {
		at := s.opts.SeedTime.Add(time.Duration(i) * time.Second).UTC()
		id := c.newID()
		c.records[id] = &record{fields: gen(r, i), version: 1, updated: at}
	}
	s.data[spec.kind] = c
	s.idem[spec.kind] = make(map[string]*idemEntry)
}

// now reads the configured clock.
func (s *Sim) now() time.Time { return s.opts.Now() }

// collectionOf returns the collection of kind, or an error.
func (s *Sim) collectionOf(kind Kind) (*collection, error) {
	c, ok := s.data[kind]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownKind, kind)
	}
	return c, nil
}

// Get returns record id of kind in the canonical schema (including id,
// version and the updated timestamp), as a copy.
func (s *Sim) Get(kind Kind, id string) (map[string]any, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.collectionOf(kind)
	if err != nil {
		return nil, false
	}
	rec, ok := c.records[id]
	if !ok {
		return nil, false
	}
	return c.render(id, rec), true
}

// Len returns how many records of kind exist.
func (s *Sim) Len(kind Kind) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.data[kind]; ok {
		return len(c.records)
	}
	return 0
}

// Update changes record id of kind as a vendor-side edit would: fn gets a
// copy of the record's fields (without id, version and the updated
// timestamp, which it cannot change) to modify in place; the record then
// gets the next version and an updated timestamp of Options.Now. fn runs
// under the Sim's lock and must not call the Sim. Webhooks to registered
// targets are delivered (or dropped) before Update returns; their outcome
// is in Webhooks, not in the returned error. Update returns the new version.
func (s *Sim) Update(kind Kind, id string, fn func(fields map[string]any)) (int, error) {
	s.mu.Lock()
	c, err := s.collectionOf(kind)
	if err != nil {
		s.mu.Unlock()
		return 0, fmt.Errorf("vendorsim: update %s %q: %w", kind, id, err)
	}
	rec, ok := c.records[id]
	if !ok {
		s.mu.Unlock()
		return 0, fmt.Errorf("vendorsim: update %s %q: %w", kind, id, ErrNotFound)
	}
	fields := deepCopyMap(rec.fields)
	if fn != nil {
		fn(fields)
	}
	c.stripManaged(fields)
	rec.fields = fields
	rec.version++
	rec.updated = s.now().UTC()
	version := rec.version
	s.mu.Unlock()

	s.hooks.notify(s.ctx, Event{Type: string(kind) + ".updated", ID: id, Version: version})
	return version, nil
}

// Delete removes record id of kind as a vendor-side deletion would: GETs
// of it answer 404 from now on, lists no longer include it, and a
// "<kind>.deleted" event (with the version it had) is delivered to the
// registered targets (or dropped) before Delete returns.
func (s *Sim) Delete(kind Kind, id string) error {
	s.mu.Lock()
	c, err := s.collectionOf(kind)
	if err != nil {
		s.mu.Unlock()
		return fmt.Errorf("vendorsim: delete %s %q: %w", kind, id, err)
	}
	rec, ok := c.records[id]
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("vendorsim: delete %s %q: %w", kind, id, ErrNotFound)
	}
	delete(c.records, id)
	if c.deleted == nil {
		c.deleted = make(map[string]*record)
	}
	c.deleted[id] = rec
	version := rec.version
	s.mu.Unlock()

	s.hooks.notify(s.ctx, Event{Type: string(kind) + ".deleted", ID: id, Version: version})
	return nil
}

// Restore brings back record id of kind that Delete removed, exactly as it
// was (same fields, version and updated timestamp), as a vendor's undo of
// a deletion or a replica that answered 404 for a while would: GETs and
// lists see it again. No event is delivered.
func (s *Sim) Restore(kind Kind, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.collectionOf(kind)
	if err != nil {
		return fmt.Errorf("vendorsim: restore %s %q: %w", kind, id, err)
	}
	rec, ok := c.deleted[id]
	if !ok {
		return fmt.Errorf("vendorsim: restore %s %q: %w", kind, id, ErrNotFound)
	}
	if _, taken := c.records[id]; taken {
		return fmt.Errorf("vendorsim: restore %s %q: the id is taken again", kind, id)
	}
	delete(c.deleted, id)
	c.records[id] = rec
	return nil
}

// NewEndpoint returns a new network face of the Sim serving the given APIs
// (both when none is given) over the Sim's shared data, with chaos knobs
// and counters of its own. Use one per "region". It panics on an API that
// is not simulated.
func (s *Sim) NewEndpoint(apis ...API) *Endpoint {
	s.mu.Lock()
	n := s.endpointSeq
	s.endpointSeq++
	s.mu.Unlock()
	if len(apis) == 0 {
		apis = []API{APICommerce, APICRM}
	}
	return newEndpoint(s, apis, newRand(s.opts.Seed, streamEndpoints+n))
}

// Endpoint returns the default endpoint, which serves both APIs and whose
// knobs and counters the Sim's shortcuts (Handler, Start, Chaos, Requests,
// Reset) use.
func (s *Sim) Endpoint() *Endpoint { return s.def }

// Handler returns the default endpoint's handler, for httptest.
func (s *Sim) Handler() http.Handler { return s.def }

// Start serves the default endpoint on addr; see Endpoint.Start.
func (s *Sim) Start(addr string) (*Server, error) { return s.def.Start(addr) }

// Chaos returns the default endpoint's chaos knobs.
func (s *Sim) Chaos() *Chaos { return s.def.Chaos() }

// Requests returns the default endpoint's request counters.
func (s *Sim) Requests() Stats { return s.def.Requests() }

// Reset zeroes the default endpoint's request counters.
func (s *Sim) Reset() { s.def.Reset() }

// Close stops every server started from the Sim or its endpoints, releases
// hung requests, cancels webhook deliveries in flight and waits for them.
// It is safe to call more than once.
func (s *Sim) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	servers := make([]*Server, 0, len(s.servers))
	for srv := range s.servers {
		servers = append(servers, srv)
	}
	s.mu.Unlock()

	close(s.done)
	var errs []error
	for _, srv := range servers {
		if err := srv.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	s.cancel()
	s.inflight.close()
	return errors.Join(errs...)
}
