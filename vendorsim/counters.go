package vendorsim

import (
	"maps"
	"net/http"
	"sync"
)

// RouteUnmatched is the route under which Stats counts requests that
// matched no route.
const RouteUnmatched = "unmatched"

// StatusNoResponse is the status counted for a request that got no
// response: an outage closed or hung its connection, or its client left
// during injected latency.
const StatusNoResponse = 0

// Stats is a snapshot of an endpoint's request counters. A request is
// counted once, when its status is decided (before the response is
// written), so a client that has read a response sees it counted.
type Stats struct {
	// Total counts every request.
	Total int `json:"total"`
	// ByStatus counts requests by response status (StatusNoResponse for
	// none).
	ByStatus map[int]int `json:"by_status"`
	// ByRoute counts requests by route pattern, such as RouteProductGet
	// ("GET /v2/products/{id}"), or RouteUnmatched.
	ByRoute map[string]RouteStats `json:"by_route"`
}

// RouteStats counts the requests of one route.
type RouteStats struct {
	Total    int         `json:"total"`
	ByStatus map[int]int `json:"by_status"`
}

// Count returns how many requests of route got status.
func (s Stats) Count(route string, status int) int {
	return s.ByRoute[route].ByStatus[status]
}

// counters accumulates Stats.
type counters struct {
	mu sync.Mutex
	st Stats
}

func newCounters() *counters {
	c := &counters{}
	c.reset()
	return c
}

func (c *counters) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.st = Stats{ByStatus: map[int]int{}, ByRoute: map[string]RouteStats{}}
}

func (c *counters) add(route string, status int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.st.Total++
	c.st.ByStatus[status]++
	rs := c.st.ByRoute[route]
	if rs.ByStatus == nil {
		rs.ByStatus = map[int]int{}
	}
	rs.Total++
	rs.ByStatus[status]++
	c.st.ByRoute[route] = rs
}

func (c *counters) snapshot() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := Stats{Total: c.st.Total, ByStatus: maps.Clone(c.st.ByStatus), ByRoute: make(map[string]RouteStats, len(c.st.ByRoute))}
	for k, v := range c.st.ByRoute {
		out.ByRoute[k] = RouteStats{Total: v.Total, ByStatus: maps.Clone(v.ByStatus)}
	}
	return out
}

// recorder counts a request the first time its status is decided.
type recorder struct {
	http.ResponseWriter
	route   string
	stats   *counters
	counted bool
}

// count records status unless the request was already counted.
func (w *recorder) count(status int) {
	if w.counted {
		return
	}
	w.counted = true
	w.stats.add(w.route, status)
}

// WriteHeader counts, then writes the header.
func (w *recorder) WriteHeader(status int) {
	w.count(status)
	w.ResponseWriter.WriteHeader(status)
}

// Write counts an implicit 200, then writes.
func (w *recorder) Write(b []byte) (int, error) {
	w.count(http.StatusOK)
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }
