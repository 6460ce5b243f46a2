package vendorsim

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
)

// ControlPrefix is the path prefix of the control routes.
const ControlPrefix = "/__sim/"

// Endpoint is one network face of a Sim: it serves some of the APIs over
// the Sim's shared data, with its own chaos knobs and request counters.
// It is an http.Handler. Get one from Sim.NewEndpoint or Sim.Endpoint.
type Endpoint struct {
	sim     *Sim
	apis    []API
	chaos   *Chaos
	stats   *counters
	mux     *http.ServeMux
	control *http.ServeMux
}

func newEndpoint(s *Sim, apis []API, rng *lockedRand) *Endpoint {
	e := &Endpoint{
		sim:     s,
		apis:    apis,
		chaos:   newChaos(rng, s.opts.Sleep, s.done),
		stats:   newCounters(),
		mux:     http.NewServeMux(),
		control: http.NewServeMux(),
	}
	for _, api := range apis {
		spec := specFor(api)
		if spec == nil {
			panic(fmt.Sprintf("vendorsim: unknown API %q", api))
		}
		e.mux.HandleFunc("GET "+spec.collection+"/{id}", e.getRecord(spec))
		e.mux.HandleFunc("GET "+spec.collection, e.listRecords(spec))
		e.mux.HandleFunc("PUT "+spec.collection+"/{id}", e.writeRecord(spec))
		e.mux.HandleFunc("POST "+spec.collection, e.writeRecord(spec))
	}
	e.mux.HandleFunc(RouteMedia, e.serveMedia)
	e.registerIndex()
	e.registerControl()
	return e
}

// APIs returns the APIs the endpoint serves.
func (e *Endpoint) APIs() []API { return append([]API(nil), e.apis...) }

// Chaos returns the endpoint's chaos knobs.
func (e *Endpoint) Chaos() *Chaos { return e.chaos }

// Requests returns a snapshot of the endpoint's request counters.
func (e *Endpoint) Requests() Stats { return e.stats.snapshot() }

// Reset zeroes the endpoint's request counters.
func (e *Endpoint) Reset() { e.stats.reset() }

// Handler returns the endpoint as an http.Handler, for httptest.
func (e *Endpoint) Handler() http.Handler { return e }

// ServeHTTP serves the control routes untouched, and every other request
// through the chaos knobs, the counters and the API routes.
func (e *Endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, ControlPrefix) {
		e.control.ServeHTTP(w, r)
		return
	}
	_, route := e.mux.Handler(r)
	if route == "" {
		route = RouteUnmatched
	}
	rec := &recorder{ResponseWriter: w, route: route, stats: e.stats}
	if e.chaos.intercept(rec, r) {
		return
	}
	e.mux.ServeHTTP(rec, r)
	rec.count(http.StatusOK) // a handler that wrote nothing answered 200
}

// writeJSON answers with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"internal_error","message":"vendorsim: cannot encode response"}}`)
	}
	writeRaw(w, status, append(b, '\n'))
}

// writeRaw answers with an encoded JSON body.
func writeRaw(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// dropConnection closes the client's connection without a response.
func dropConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler) // the server closes the connection
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // reset rather than a clean FIN: the vendor "died"
	}
	_ = conn.Close()
}
