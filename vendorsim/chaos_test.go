package vendorsim

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"
)

// sleepRecorder records requested delays without waiting.
type sleepRecorder struct {
	mu     sync.Mutex
	delays []time.Duration
}

func (s *sleepRecorder) Sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delays = append(s.delays, d)
	return ctx.Err()
}

func TestLatencyWithJitter(t *testing.T) {
	rec := &sleepRecorder{}
	h := newHarness(t, Options{Products: 1, Sleep: rec.Sleep})
	if err := h.sim.Chaos().Set(ChaosConfig{Latency: 200 * time.Millisecond, Jitter: 50 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		wantStatus(t, h.call(t, "GET", "/v2/products/1", nil), 200)
	}
	distinct := map[time.Duration]bool{}
	for _, d := range rec.delays {
		if d < 200*time.Millisecond || d >= 250*time.Millisecond {
			t.Fatalf("delay %v outside [200ms, 250ms)", d)
		}
		distinct[d] = true
	}
	if len(rec.delays) != 20 || len(distinct) < 2 {
		t.Fatalf("%d delays, %d distinct", len(rec.delays), len(distinct))
	}

	// The same seed draws the same jitter.
	rec2 := &sleepRecorder{}
	h2 := newHarness(t, Options{Products: 1, Sleep: rec2.Sleep})
	_ = h2.sim.Chaos().Set(ChaosConfig{Latency: 200 * time.Millisecond, Jitter: 50 * time.Millisecond})
	for range 20 {
		h2.call(t, "GET", "/v2/products/1", nil)
	}
	for i := range rec.delays {
		if rec.delays[i] != rec2.delays[i] {
			t.Fatalf("delay %d: %v vs %v with the same seed", i, rec.delays[i], rec2.delays[i])
		}
	}
}

func TestRealLatencyDelays(t *testing.T) {
	h := newHarness(t, Options{Products: 1})
	_ = h.sim.Chaos().Set(ChaosConfig{Latency: 30 * time.Millisecond})
	start := time.Now()
	wantStatus(t, h.call(t, "GET", "/v2/products/1", nil), 200)
	if el := time.Since(start); el < 30*time.Millisecond {
		t.Fatalf("answered after %v, want >= 30ms", el)
	}
}

func TestErrorRate(t *testing.T) {
	h := newHarness(t, Options{Products: 1})
	_ = h.sim.Chaos().Set(ChaosConfig{ErrorRate: 1})
	seen := map[int]int{}
	for range 30 {
		r := h.call(t, "GET", "/v2/products/1", nil)
		seen[r.status]++
	}
	if len(seen) != 3 || seen[500]+seen[502]+seen[503] != 30 {
		t.Fatalf("statuses %v, want a mix of 500/502/503", seen)
	}
	_ = h.sim.Chaos().Set(ChaosConfig{ErrorRate: 0.5})
	h.sim.Reset()
	for range 40 {
		h.call(t, "GET", "/v2/products/1", nil)
	}
	if ok := h.sim.Requests().ByStatus[200]; ok == 0 || ok == 40 {
		t.Fatalf("rate 0.5 gave %d/40 successes", ok)
	}
}

func TestThrottle(t *testing.T) {
	h := newHarness(t, Options{Products: 1, Contacts: 1})
	_ = h.sim.Chaos().Set(ChaosConfig{ThrottleNext: 2, RetryAfter: 1500 * time.Millisecond})
	for i := range 2 {
		r := h.call(t, "GET", "/v2/products/1", nil)
		wantStatus(t, r, http.StatusTooManyRequests)
		if ra := r.header.Get("Retry-After"); ra != "2" {
			t.Fatalf("request %d: Retry-After %q, want 2", i, ra)
		}
		if r.json(t)["error"].(map[string]any)["code"] != "rate_limited" {
			t.Errorf("429 body %s", r.body)
		}
	}
	wantStatus(t, h.call(t, "GET", "/v2/products/1", nil), 200)
	if n := h.sim.Chaos().Get().ThrottleNext; n != 0 {
		t.Errorf("ThrottleNext left at %d", n)
	}

	_ = h.sim.Chaos().Set(ChaosConfig{ThrottleRate: 1})
	r := h.call(t, "GET", "/v1/contacts/c-1", nil)
	wantStatus(t, r, http.StatusTooManyRequests)
	if r.header.Get("Retry-After") != "1" || r.json(t)["category"] != "RATE_LIMITS" {
		t.Errorf("crm 429: Retry-After %q, body %s", r.header.Get("Retry-After"), r.body)
	}
}

func TestSchemaChangeRenamesFields(t *testing.T) {
	h := newHarness(t, Options{Products: 2, Contacts: 1})
	_ = h.sim.Chaos().Set(ChaosConfig{SchemaChange: true})
	p := h.call(t, "GET", "/v2/products/1", nil).json(t)
	price := p["price"].(map[string]any)
	if _, ok := p["title"]; ok || p["name"] == nil || price["amount"] != nil || price["value"] == nil || price["currency"] != "EUR" {
		t.Fatalf("renamed product %v", p)
	}
	list := h.call(t, "GET", "/v2/products", nil).json(t)
	for _, it := range list["data"].([]any) {
		if _, ok := it.(map[string]any)["name"]; !ok {
			t.Fatalf("list item not renamed: %v", it)
		}
	}
	c := h.call(t, "GET", "/v1/contacts/c-1", nil).json(t)
	if c["first_name"] == nil || c["last_name"] == nil || c["firstname"] != nil {
		t.Fatalf("renamed contact %v", c)
	}
	w := h.call(t, "PUT", "/v2/products/2", `{"title":{"en":"Old schema in"},"price":{"amount":5}}`).json(t)
	if w["name"].(map[string]any)["en"] != "Old schema in" || w["price"].(map[string]any)["value"] != 5.0 {
		t.Fatalf("write response %v", w)
	}
	// The stored record keeps the canonical schema.
	if stored, _ := h.sim.Get(KindProduct, "1"); stored["title"] == nil {
		t.Errorf("stored record renamed: %v", stored)
	}
	h.sim.Chaos().Clear()
	if p := h.call(t, "GET", "/v2/products/1", nil).json(t); p["title"] == nil {
		t.Errorf("after Clear: %v", p)
	}
}

func TestOutageCloseDropsConnection(t *testing.T) {
	h := newHarness(t, Options{Products: 1})
	_ = h.sim.Chaos().Set(ChaosConfig{Outage: OutageClose})
	_, err := h.try("GET", h.srv.URL+"/v2/products/1", nil)
	if err == nil {
		t.Fatal("request succeeded during an outage")
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("got a timeout, want a closed connection: %v", err)
	}
	if n := h.sim.Requests().Count(RouteProductGet, StatusNoResponse); n != 1 {
		t.Errorf("no-response count %d", n)
	}
	h.sim.Chaos().Clear()
	wantStatus(t, h.call(t, "GET", "/v2/products/1", nil), 200)
}

func TestOutageHangUntilClientTimesOut(t *testing.T) {
	h := newHarness(t, Options{Products: 1})
	_ = h.sim.Chaos().Set(ChaosConfig{Outage: OutageHang})
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 100 * time.Millisecond}
	req, _ := http.NewRequest("GET", h.srv.URL+"/v2/products/1", nil)
	req.Header.Set("Authorization", "Bearer "+DefaultCommerceToken)
	_, err := client.Do(req)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("err = %v, want a client timeout", err)
	}
}

func TestOutageHangReleasedWhenLifted(t *testing.T) {
	h := newHarness(t, Options{Products: 1})
	hanging := make(chan struct{}, 1)
	h.sim.Chaos().onHang = func() { hanging <- struct{}{} }
	_ = h.sim.Chaos().Set(ChaosConfig{Outage: OutageHang})
	errc := make(chan error, 1)
	go func() {
		_, err := h.try("GET", h.srv.URL+"/v2/products/1", nil) // no client timeout
		errc <- err
	}()
	<-hanging
	if n := h.sim.Requests().Count(RouteProductGet, StatusNoResponse); n != 1 {
		t.Errorf("hung request counted %d times", n)
	}
	h.sim.Chaos().Clear()
	if err := <-errc; err == nil {
		t.Fatal("hung request got a response")
	}
	wantStatus(t, h.call(t, "GET", "/v2/products/1", nil), 200)
}

func TestFailAfterWriteKeepsEffect(t *testing.T) {
	h := newHarness(t, Options{Products: 1})
	_ = h.sim.Chaos().Set(ChaosConfig{FailAfterWrite: 1})
	body := `{"stock":7}`
	wantStatus(t, h.call(t, "PUT", "/v2/products/1", body, HeaderIdempotencyKey, "lost"), http.StatusBadGateway)
	if p, _ := h.sim.Get(KindProduct, "1"); p["version"] != 2 {
		t.Fatalf("effect missing: %v", p)
	}
	h.sim.Chaos().Clear()
	r := h.call(t, "PUT", "/v2/products/1", body, HeaderIdempotencyKey, "lost") // the client's retry
	wantStatus(t, r, http.StatusOK)
	if r.header.Get(HeaderIdempotentReplayed) != "true" || r.json(t)["version"] != 2.0 {
		t.Fatalf("retry: %s", r.body)
	}
	if len(h.sim.Writes()) != 1 {
		t.Fatalf("%d writes, want 1", len(h.sim.Writes()))
	}
}

func TestChaosOnlyScopesKnobs(t *testing.T) {
	h := newHarness(t, Options{Products: 1, Contacts: 1})
	_ = h.sim.Chaos().Set(ChaosConfig{ErrorRate: 1, SchemaChange: true, Only: []string{"/v1/"}})
	if p := h.call(t, "GET", "/v2/products/1", nil); p.status != 200 || p.json(t)["title"] == nil {
		t.Fatalf("commerce affected: %d %s", p.status, p.body)
	}
	if r := h.call(t, "GET", "/v1/contacts/c-1", nil); r.status < 500 {
		t.Fatalf("crm not affected: %d", r.status)
	}
}

func TestChaosValidation(t *testing.T) {
	sim := New(Options{})
	defer sim.Close()
	c := sim.Chaos()
	bad := []ChaosConfig{
		{ErrorRate: 1.5}, {ThrottleRate: -0.1}, {FailAfterWrite: 2}, {Latency: -1},
		{Jitter: -1}, {ThrottleNext: -1}, {RetryAfter: -1}, {Outage: "sometimes"},
	}
	for _, cfg := range bad {
		if err := c.Set(cfg); err == nil {
			t.Errorf("Set(%+v) accepted", cfg)
		}
	}
	if c.Get().Outage != OutageNone {
		t.Error("a refused Set changed the knobs")
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	for d, want := range map[time.Duration]int{0: 1, time.Millisecond: 1, time.Second: 1, 2100 * time.Millisecond: 3, time.Minute: 60} {
		if got := retryAfterSeconds(d); got != strconv.Itoa(want) {
			t.Errorf("retryAfterSeconds(%v) = %s, want %d", d, got, want)
		}
	}
}

func TestConcurrentRequestsAndKnobChanges(t *testing.T) {
	h := newHarness(t, Options{Products: 20, Contacts: 5})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 25 {
				path := "/v2/products/" + strconv.Itoa(1+(i+j)%20)
				if j%3 == 0 {
					path = "/v1/contacts?per_page=2"
				}
				if _, err := h.try("GET", h.srv.URL+path, nil); err != nil {
					t.Error(err)
					return
				}
				if j%5 == 0 {
					h.call(t, "PUT", "/v2/products/"+strconv.Itoa(1+j%20), `{"stock":1}`)
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for k := range 50 {
			_ = h.sim.Chaos().Update(func(c *ChaosConfig) { c.ErrorRate = float64(k%2) * 0.3; c.SchemaChange = k%3 == 0 })
			_, _ = h.sim.Update(KindContact, "c-1", func(f map[string]any) { f["n"] = k })
			_ = h.sim.Requests()
		}
	}()
	wg.Wait()
	if st := h.sim.Requests(); st.Total != 8*25+8*5 {
		t.Fatalf("total %d, want %d", st.Total, 8*25+8*5)
	}
}
