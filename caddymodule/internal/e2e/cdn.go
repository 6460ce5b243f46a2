package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/craftedge/craftedge/jobs"
)

// FakeCDN is a real HTTP server on 127.0.0.1 standing in for a CDN's
// purge API: it records every request and answers what the test scripts
// (200 with Cloudflare's success envelope by default).
type FakeCDN struct {
	t   *testing.T
	ln  net.Listener
	srv *http.Server

	mu       sync.Mutex
	requests []CDNRequest
	// answers are consumed in order; when empty, answer decides.
	answers []CDNAnswer
	answer  func(r CDNRequest) CDNAnswer
}

// CDNRequest is one request the fake CDN received.
type CDNRequest struct {
	Method, Path, Query string
	Header              http.Header
	Body                string
}

// CDNAnswer is what the fake CDN answers.
type CDNAnswer struct {
	// Hang holds the request until the client gives up (a timeout).
	Hang   bool
	Status int
	Header map[string]string
	Body   string
}

// NewFakeCDN starts a fake CDN, stopped at the test's end.
func NewFakeCDN(t *testing.T) *FakeCDN {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &FakeCDN{t: t, ln: ln}
	f.srv = &http.Server{Handler: f, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = f.srv.Serve(ln) }()
	t.Cleanup(func() { _ = f.srv.Close() })
	return f
}

// URL is the fake CDN's base URL.
func (f *FakeCDN) URL() string { return "http://" + f.ln.Addr().String() }

func (f *FakeCDN) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	req := CDNRequest{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Header: r.Header.Clone(), Body: string(b)}
	f.mu.Lock()
	f.requests = append(f.requests, req)
	a := CDNAnswer{Status: http.StatusOK, Body: `{"success":true,"errors":[],"messages":[],"result":{"id":"x"}}`}
	switch {
	case len(f.answers) > 0:
		a = f.answers[0]
		f.answers = f.answers[1:]
	case f.answer != nil:
		a = f.answer(req)
	}
	f.mu.Unlock()
	if a.Hang {
		<-r.Context().Done()
		return
	}
	for k, v := range a.Header {
		w.Header().Set(k, v)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(a.Status)
	_, _ = io.WriteString(w, a.Body)
}

// Script queues answers, consumed one per request.
func (f *FakeCDN) Script(answers ...CDNAnswer) {
	f.mu.Lock()
	f.answers = append(f.answers, answers...)
	f.mu.Unlock()
}

// AnswerWith decides the answers once the scripted ones are used up.
func (f *FakeCDN) AnswerWith(fn func(r CDNRequest) CDNAnswer) {
	f.mu.Lock()
	f.answer = fn
	f.mu.Unlock()
}

// Got returns the requests received so far.
func (f *FakeCDN) Got() []CDNRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests)
}

// WaitRequests waits until the CDN has received n requests and returns
// them.
func (f *FakeCDN) WaitRequests(n int) []CDNRequest {
	f.t.Helper()
	WaitFor(f.t, fmt.Sprintf("%d requests at the fake CDN", n), func() bool { return len(f.Got()) >= n })
	return f.Got()
}

// CDNJobs lists the cdn.purge jobs, oldest first.
func CDNJobs(g *Gateway) []jobs.Job {
	g.T.Helper()
	r := g.Admin(http.MethodGet, "/craftedge/jobs?kind=cdn.purge&limit=100", "")
	WantStatus(g.T, r, 200)
	var l struct {
		Jobs []jobs.Job `json:"jobs"`
	}
	if err := json.Unmarshal([]byte(r.Body), &l); err != nil {
		g.T.Fatal(err)
	}
	return l.Jobs
}

// WaitCDNJobs waits for n cdn.purge jobs, all in state, and returns them.
func WaitCDNJobs(g *Gateway, n int, state jobs.State) []jobs.Job {
	g.T.Helper()
	var js []jobs.Job
	WaitFor(g.T, fmt.Sprintf("%d cdn.purge jobs %s", n, state), func() bool {
		js = CDNJobs(g)
		if len(js) != n {
			return false
		}
		for _, j := range js {
			if j.State != state {
				return false
			}
		}
		return true
	})
	return js
}

// Purge posts a purge body to the admin API and wants 200.
func Purge(g *Gateway, body string) {
	g.T.Helper()
	WantStatus(g.T, g.Admin(http.MethodPost, "/craftedge/purge", body), 200)
}

// CDNCounter reads craftedge_cdn_purge_requests_total of a provider and
// outcome (0 when absent).
func CDNCounter(g *Gateway, provider, outcome string) float64 {
	v := Scrape(g, fmt.Sprintf(`craftedge_cdn_purge_requests_total{outcome=%q,provider=%q}`, outcome, provider))
	return max(v, 0)
}

// WantJSON compares a JSON body with want, both normalised.
func WantJSON(t *testing.T, got string, want any) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("body %q is not JSON: %v", got, err)
	}
	b, _ := json.Marshal(want)
	_ = json.Unmarshal(b, &w)
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	if string(gb) != string(wb) {
		t.Fatalf("body = %s, want %s", gb, wb)
	}
}
