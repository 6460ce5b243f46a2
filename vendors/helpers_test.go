package vendors

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/craftedge/craftedge/circuit"
)

const testToken = "s3cret-token-value"

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// fakeClock is an injectable clock. In auto mode Sleep advances the clock
// and returns at once (recording the duration); otherwise Sleep blocks until
// Advance moves the clock past its deadline.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	auto    bool
	sleeps  []time.Duration
	waiters []*sleeper
	notify  chan struct{} // one send per blocking sleeper
}

type sleeper struct {
	until time.Time
	ch    chan struct{}
}

func newFakeClock(auto bool) *fakeClock {
	return &fakeClock{now: t0, auto: auto, notify: make(chan struct{}, 10000)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	c.sleeps = append(c.sleeps, d)
	if c.auto || d <= 0 {
		c.now = c.now.Add(max(d, 0))
		c.mu.Unlock()
		return ctx.Err()
	}
	s := &sleeper{until: c.now.Add(d), ch: make(chan struct{})}
	c.waiters = append(c.waiters, s)
	c.mu.Unlock()
	c.notify <- struct{}{}
	select {
	case <-s.ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Advance moves the clock and wakes the sleepers now due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, s := range c.waiters {
		if !s.until.After(c.now) {
			close(s.ch)
		} else {
			kept = append(kept, s)
		}
	}
	c.waiters = kept
}

// waitSleepers waits until n more sleepers have started blocking.
func (c *fakeClock) waitSleepers(t *testing.T, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		select {
		case <-c.notify:
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d of %d sleepers started", i, n)
		}
	}
}

func (c *fakeClock) Sleeps() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.sleeps...)
}

// eventually waits for cond, failing after 10s. Only for state the code
// under test cannot signal (the breaker's cooldown runs on gobreaker's
// wall clock).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// recv receives from ch or fails after 10s.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
	var zero T
	return zero
}

// openDB opens a bbolt file in t.TempDir.
func openDB(t *testing.T, path string) *bolt.DB {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "craftedge.db")
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// product is an item of the test catalog.
type product struct {
	ID      string
	Title   string
	Price   int
	Version int
	Updated time.Time
}

// catalog is a small commerce-like vendor API:
//
//	GET /v2/products/{id}
//	GET /v2/products?updated_since=&page=&per_page=   {"data":[...],"has_more":bool}
//	PUT /v2/products/{id}
//
// It checks the bearer token and the Accept-Version header.
type catalog struct {
	mu       sync.Mutex
	items    map[string]*product
	renamed  bool                                              // schema change: "title" becomes "name"
	hook     func(w http.ResponseWriter, r *http.Request) bool // runs first; true = handled
	requests atomic.Int64
	pages    []int // list pages requested, in order
	srv      *httptest.Server
}

func newCatalog(t *testing.T, n int) *catalog {
	c := &catalog{items: map[string]*product{}}
	for i := 1; i <= n; i++ {
		id := strconv.Itoa(i)
		c.items[id] = &product{ID: id, Title: "Product " + id, Price: 100 * i, Version: 1,
			Updated: t0.Add(time.Duration(i) * time.Minute)}
	}
	c.srv = httptest.NewServer(http.HandlerFunc(c.serve))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *catalog) URL() string { return c.srv.URL }

// update changes a product (a new version, updated at).
func (c *catalog) update(id string, at time.Time, title string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.items[id]
	p.Version++
	p.Updated = at
	p.Title = title
}

func (c *catalog) listedPages() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.pages...)
}

func (c *catalog) json(p *product) map[string]any {
	m := map[string]any{"id": p.ID, "price": map[string]any{"amount": p.Price, "currency": "EUR"},
		"version": p.Version, "updated_at": p.Updated.Format(time.RFC3339Nano)}
	if c.renamed {
		m["name"] = map[string]any{"en": p.Title}
	} else {
		m["title"] = map[string]any{"en": p.Title}
	}
	return m
}

func (c *catalog) serve(w http.ResponseWriter, r *http.Request) {
	c.requests.Add(1)
	if c.hook != nil && c.hook(w, r) {
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+testToken {
		http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
		return
	}
	if v := r.Header.Get("Accept-Version"); v != "v2" {
		http.Error(w, `{"error":"bad version"}`, http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	rest, ok := strings.CutPrefix(r.URL.Path, "/v2/products")
	if !ok {
		http.NotFound(w, r)
		return
	}
	switch {
	case rest == "" && r.Method == http.MethodGet:
		q := r.URL.Query()
		since, err := time.Parse(time.RFC3339Nano, q.Get("updated_since"))
		if err != nil {
			http.Error(w, "bad since", http.StatusBadRequest)
			return
		}
		page, _ := strconv.Atoi(q.Get("page"))
		per, _ := strconv.Atoi(q.Get("per_page"))
		c.pages = append(c.pages, page)
		var list []*product
		for _, p := range c.items {
			if p.Updated.After(since) {
				list = append(list, p)
			}
		}
		sort.Slice(list, func(i, j int) bool {
			if !list[i].Updated.Equal(list[j].Updated) {
				return list[i].Updated.Before(list[j].Updated)
			}
			return list[i].ID < list[j].ID
		})
		from := min((page-1)*per, len(list))
		to := min(from+per, len(list))
		data := []any{}
		for _, p := range list[from:to] {
			data = append(data, c.json(p))
		}
		json.NewEncoder(w).Encode(map[string]any{"data": data, "has_more": to < len(list)})
	case strings.HasPrefix(rest, "/") && r.Method == http.MethodGet:
		p := c.items[rest[1:]]
		if p == nil {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"error":{"code":"not_found"}}`)
			return
		}
		json.NewEncoder(w).Encode(c.json(p))
	case strings.HasPrefix(rest, "/") && r.Method == http.MethodPut:
		id := rest[1:]
		var body struct {
			Title string `json:"title"`
			Price int    `json:"price"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		p := c.items[id]
		if p == nil {
			p = &product{ID: id}
			c.items[id] = p
		}
		p.Title, p.Price, p.Version, p.Updated = body.Title, body.Price, p.Version+1, t0.Add(time.Hour)
		json.NewEncoder(w).Encode(c.json(p))
	default:
		http.Error(w, "no route", http.StatusMethodNotAllowed)
	}
}

// productsResource is the catalog's resource mapping.
func productsResource() Resource {
	return Resource{
		Get:       &GetSpec{Path: "/products/{id}"},
		List:      &ListSpec{Path: "/products?updated_since={since}&page={page}&per_page={per_page}", Items: "data", HasMore: "has_more", PerPage: 2},
		Upsert:    &UpsertSpec{Method: "PUT", Path: "/products/{id}"},
		ID:        "id",
		Version:   "version",
		UpdatedAt: "updated_at",
		Fields: map[string]Field{
			"title":    {Path: "title.en", Required: true, Type: "string"},
			"price":    {Path: "price.amount", Required: true, Type: "integer"},
			"currency": {Path: "price.currency", Type: "string"},
		},
		Tags: []string{"shop:product:{id}", "shop:products"},
	}
}

// testConfig is an enabled commerce vendor on urls.
func testConfig(urls ...string) Config {
	return Config{
		Name:     "commerce",
		BaseURLs: urls,
		Version:  APIVersion{Path: "/v2", Header: "Accept-Version", Value: "v2"},
		Headers:  Headers{"Authorization": "Bearer " + testToken},
		Timeout:  5 * time.Second,
		Rate:     RateLimit{PerSecond: 1000, Burst: 1000},
		Enabled:  true,
		Breaker:  circuit.Config{Failures: 100},
		Resources: map[string]Resource{
			"products": productsResource(),
		},
	}
}

// newTestClient builds a client with an auto-advancing fake clock (so
// backoffs cost nothing) and a fixed jitter.
func newTestClient(t *testing.T, cfg Config, mod func(*ClientOptions)) (*Client, *fakeClock) {
	t.Helper()
	clk := newFakeClock(true)
	opts := ClientOptions{Now: clk.Now, Sleep: clk.Sleep, Rand: func() float64 { return 0.5 }}
	if mod != nil {
		mod(&opts)
	}
	c, err := NewClient(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	return c, clk
}
