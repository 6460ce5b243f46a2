package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/craftedge/craftedge/vendorsim"
)

// Rates are the load mix, in requests per second per class.
type Rates struct {
	Page, CP, Save, ReadModel, Live, Outbox, VendorChange float64
}

// ackedWrite is an outbox write craftedge acknowledged with 202.
type ackedWrite struct {
	Key   string // the Idempotency-Key the suite sent
	Job   string
	At    time.Time
	Burst bool // sent in the burst right before the SIGKILL
}

// loadGen drives the mix against the gateway and records every sample.
type loadGen struct {
	site     string
	client   *http.Client
	urls     []string
	products int
	sim      *vendorsim.Sim
	rates    Rates

	everCached sync.Map // cache key ("p:/blog", "l:3", "r:3") -> true

	mu      sync.Mutex
	samples []Sample
	acked   []ackedWrite
	skipped map[Class]int
	writeN  int // outbox writes sent (acknowledged or not)

	// paused stops outbox writes and vendor-side changes (for the checks
	// that compare craftedge's records with the simulator's truth);
	// changing is held while a change is being made.
	paused   atomic.Bool
	changing sync.Mutex
	changes  atomic.Int64
	writeSeq atomic.Int64
	writing  atomic.Int64 // outbox writes in flight
}

func newLoadGen(site string, urls []string, products int, sim *vendorsim.Sim, rates Rates) *loadGen {
	tr := &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 512, IdleConnTimeout: 30 * time.Second}
	return &loadGen{
		site: site, urls: urls, products: products, sim: sim, rates: rates,
		client:  &http.Client{Transport: tr, Timeout: 15 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		skipped: map[Class]int{},
	}
}

// run starts every class's generator and returns when ctx is done and
// every request has finished.
func (g *loadGen) run(ctx context.Context) {
	var wg sync.WaitGroup
	pages := newZipfPicker(len(g.urls), 1.1, 1)
	live := newZipfPicker(g.products, 1.2, 2)
	reads := newZipfPicker(g.products, 1.2, 3)
	r := rand.New(rand.NewPCG(4, 5))
	var rmu sync.Mutex
	intn := func(n int) int { rmu.Lock(); defer rmu.Unlock(); return r.IntN(n) }

	gen := func(c Class, rate float64, maxInFlight int, next func() (*http.Request, string)) {
		if rate <= 0 {
			return
		}
		wg.Go(func() { g.generate(ctx, c, rate, maxInFlight, next) })
	}
	gen(ClassPage, g.rates.Page, 256, func() (*http.Request, string) {
		u := g.urls[pages.Next()]
		return g.get(ctx, u), "p:" + u
	})
	gen(ClassReadModel, g.rates.ReadModel, 64, func() (*http.Request, string) {
		id := strconv.Itoa(reads.Next() + 1)
		return g.get(ctx, "/vendors/v1/shop/product/"+id), "r:" + id
	})
	gen(ClassLive, g.rates.Live, 64, func() (*http.Request, string) {
		id := strconv.Itoa(live.Next() + 1)
		return g.get(ctx, "/shop-api/products/"+id), "l:" + id
	})
	gen(ClassCP, g.rates.CP, 32, func() (*http.Request, string) {
		req := g.get(ctx, "/admin")
		req.AddCookie(&http.Cookie{Name: "CraftSessionId", Value: "chaos-editor"})
		return req, ""
	})
	gen(ClassSave, g.rates.Save, 32, func() (*http.Request, string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, g.site+"/admin/entries/"+strconv.Itoa(1+intn(len(entrySlugs))), nil)
		req.AddCookie(&http.Cookie{Name: "CraftSessionId", Value: "chaos-editor"})
		req.Header.Set("Accept", "application/json")
		return req, ""
	})
	gen(ClassOutbox, g.rates.Outbox, 32, func() (*http.Request, string) {
		if g.paused.Load() {
			return nil, ""
		}
		return g.outboxRequest(ctx, 1+intn(min(g.products, 50))), ""
	})
	if g.rates.VendorChange > 0 {
		wg.Go(func() { g.changeVendorRecords(ctx, g.rates.VendorChange) })
	}
	wg.Wait()
}

func (g *loadGen) get(ctx context.Context, path string) *http.Request {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, g.site+path, nil)
	req.Header.Set("Accept-Encoding", "gzip, deflate, br, zstd")
	return req
}

// outboxRequest is a write to product id with a fresh Idempotency-Key.
func (g *loadGen) outboxRequest(ctx context.Context, id int) *http.Request {
	n := g.writeSeq.Add(1)
	body := fmt.Sprintf(`{"sku":"SKU-%d","title":{"en":"Chaos write %d"},"price":{"amount":%d,"currency":"EUR"},"stock":%d}`,
		id, n, 100+n%900, n%50)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, g.site+"/vendors/v1/shop/product/"+strconv.Itoa(id), strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "chaos-"+strconv.FormatInt(n, 10))
	req.Header.Set("Authorization", "Bearer "+recordsToken)
	return req
}

// generate sends requests of one class at rate per second (open loop),
// at most maxInFlight at once; a tick finding every slot taken is counted
// as skipped rather than queued. Requests are evenly spaced, except the
// editors' saves (see arrivals).
func (g *loadGen) generate(ctx context.Context, c Class, rate float64, maxInFlight int, next func() (*http.Request, string)) {
	sem := make(chan struct{}, maxInFlight)
	var wg sync.WaitGroup
	defer wg.Wait()
	tick, stop := arrivals(c, rate)
	defer stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick():
		}
		req, key := next()
		if req == nil {
			continue
		}
		select {
		case sem <- struct{}{}:
		default:
			g.mu.Lock()
			g.skipped[c]++
			g.mu.Unlock()
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			g.do(c, req, key, false)
		})
	}
}

// saveSeed seeds the editors' save arrivals (-seed; drawn per run
// unless given, and printed in the report so a run can be replayed).
var saveSeed uint64

// arrivals is the clock of a class's generator at rate per second: a
// ticker, except for the editors' saves, which arrive as a Poisson process
// (exponential gaps of mean 1/rate, from saveSeed, so each run samples
// another sequence). On a 1 s ticker the saves were phase-locked to the windows,
// which are whole seconds long and counted from the same start: in every
// run a save answered within milliseconds before each fault began, so its
// purge always landed as Craft turned slow (bench/chaos/README.md, "Craft
// slow"). An editor's save is not synchronised with Craft's troubles.
func arrivals(c Class, rate float64) (tick func() <-chan time.Time, stop func()) {
	mean := float64(time.Second) / rate
	if c == ClassSave {
		r := rand.New(rand.NewPCG(saveSeed, 9))
		return func() <-chan time.Time { return time.After(time.Duration(r.ExpFloat64() * mean)) }, func() {}
	}
	t := time.NewTicker(time.Duration(mean))
	return func() <-chan time.Time { return t.C }, t.Stop
}

// do sends one request and records its sample.
func (g *loadGen) do(c Class, req *http.Request, key string, burst bool) Sample {
	if c == ClassOutbox {
		g.writing.Add(1)
		defer g.writing.Add(-1)
	}
	_, ever := g.everCached.Load(key)
	s := Sample{Class: c, Start: time.Now(), EverCached: key != "" && ever, Key: key}
	res, err := g.client.Do(req)
	var job string
	if err == nil {
		if c == ClassOutbox && res.StatusCode == http.StatusAccepted {
			loc := res.Header.Get("Location")
			job = loc[strings.LastIndexByte(loc, '/')+1:]
		}
		_, err = io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
	s.Latency = time.Since(s.Start)
	if req.Context().Err() != nil && err != nil {
		return s // the run is over: not a sample
	}
	if err == nil {
		s.Status = res.StatusCode
		var stored bool
		s.CacheStatus = res.Header.Get("Cache-Status")
		s.Serve, stored = classifyCacheStatus(s.CacheStatus)
		if stored && key != "" {
			g.everCached.Store(key, true)
		}
	}
	g.mu.Lock()
	g.samples = append(g.samples, s)
	if c == ClassOutbox {
		g.writeN++
		if s.Status == http.StatusAccepted {
			g.acked = append(g.acked, ackedWrite{Key: req.Header.Get("Idempotency-Key"), Job: job, At: s.Start, Burst: burst})
		}
	}
	g.mu.Unlock()
	return s
}

// burstWrites sends n outbox writes at once to a few entities and waits
// for their answers; it returns how many were acknowledged.
func (g *loadGen) burstWrites(ctx context.Context, n int) int {
	var wg sync.WaitGroup
	var acked atomic.Int64
	for i := range n {
		req := g.outboxRequest(ctx, 1+i%3)
		wg.Go(func() {
			if g.do(ClassOutbox, req, "", true).Status == http.StatusAccepted {
				acked.Add(1)
			}
		})
	}
	wg.Wait()
	return int(acked.Load())
}

// changeVendorRecords edits products in the simulator at rate per second,
// as the shop's own admins would; each change sends a signed webhook to
// craftedge (unless the drop knob swallows it).
func (g *loadGen) changeVendorRecords(ctx context.Context, rate float64) {
	r := rand.New(rand.NewPCG(6, 7))
	t := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if g.paused.Load() {
			continue
		}
		id := strconv.Itoa(1 + r.IntN(g.products))
		stock := r.IntN(100)
		g.changing.Lock()
		if !g.paused.Load() {
			_, _ = g.sim.Update(vendorsim.KindProduct, id, func(f map[string]any) { f["stock"] = stock })
			g.changes.Add(1)
		}
		g.changing.Unlock()
	}
}

// pause stops writes and vendor changes and waits for a change in
// progress (and its webhook) and the writes in flight to finish.
func (g *loadGen) pause() {
	g.paused.Store(true)
	g.changing.Lock()
	g.changing.Unlock() // (empty on purpose: waits for the change in progress)
	for g.writing.Load() > 0 {
		time.Sleep(10 * time.Millisecond)
	}
}

func (g *loadGen) resume() { g.paused.Store(false) }

// snapshot returns a copy of the samples and acknowledged writes so far.
func (g *loadGen) snapshot() ([]Sample, []ackedWrite, map[Class]int, int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	sk := map[Class]int{}
	for k, v := range g.skipped {
		sk[k] = v
	}
	return append([]Sample(nil), g.samples...), append([]ackedWrite(nil), g.acked...), sk, g.writeN
}
