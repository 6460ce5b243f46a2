package vendorsim

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// List paging limits.
const (
	DefaultPerPage = 25
	MaxPerPage     = 100
)

// maxBody bounds a write's body.
const maxBody = 1 << 20

// HeaderAPIVersion is the response header naming the API's version;
// HeaderAcceptVersion is the request header that pins it.
const (
	HeaderAPIVersion    = "API-Version"
	HeaderAcceptVersion = "Accept-Version"
)

// admit checks the bearer token and the pinned version, answering the
// request itself when either is wrong.
func (e *Endpoint) admit(spec *apiSpec, w http.ResponseWriter, r *http.Request) bool {
	w.Header().Set(HeaderAPIVersion, spec.version)
	want := e.sim.opts.CommerceToken
	if spec.api == APICRM {
		want = e.sim.opts.CRMToken
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="vendorsim"`)
		writeError(w, spec, http.StatusUnauthorized, codeUnauthorized, "missing or invalid bearer token")
		return false
	}
	if v := r.Header.Get(HeaderAcceptVersion); v != "" && !strings.EqualFold(v, spec.version) {
		writeError(w, spec, http.StatusBadRequest, codeVersion,
			fmt.Sprintf("%s %q is not supported; this API is %s", HeaderAcceptVersion, v, spec.version))
		return false
	}
	return true
}

// getRecord serves GET {collection}/{id}.
func (e *Endpoint) getRecord(spec *apiSpec) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !e.admit(spec, w, r) {
			return
		}
		id := r.PathValue("id")
		s := e.sim
		s.mu.Lock()
		c := s.data[spec.kind]
		rec, ok := c.records[id]
		var out map[string]any
		if ok {
			out = c.render(id, rec)
		}
		s.mu.Unlock()
		if !ok {
			writeError(w, spec, http.StatusNotFound, codeNotFound, fmt.Sprintf("%s %q not found", spec.kind, id))
			return
		}
		applyRenames(out, e.chaos.renames(spec, r.URL.Path))
		writeJSON(w, http.StatusOK, out)
	}
}

// listParams are a list request's query parameters.
type listParams struct {
	since   time.Time
	page    int
	perPage int
}

func parseListParams(r *http.Request) (listParams, error) {
	q := r.URL.Query()
	p := listParams{page: 1, perPage: DefaultPerPage}
	if v := q.Get("updated_since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return p, fmt.Errorf("updated_since %q is not an RFC 3339 timestamp", v)
		}
		p.since = t
	}
	if v := q.Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return p, fmt.Errorf("page %q is not a positive integer", v)
		}
		p.page = n
	}
	if v := q.Get("per_page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxPerPage {
			return p, fmt.Errorf("per_page %q is not an integer in 1..%d", v, MaxPerPage)
		}
		p.perPage = n
	}
	return p, nil
}

// listRecords serves GET {collection}?updated_since=&page=&per_page=.
func (e *Endpoint) listRecords(spec *apiSpec) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !e.admit(spec, w, r) {
			return
		}
		p, err := parseListParams(r)
		if err != nil {
			writeError(w, spec, http.StatusBadRequest, codeBadRequest, err.Error())
			return
		}
		s := e.sim
		s.mu.Lock()
		c := s.data[spec.kind]
		all := c.list(p.since)
		total := len(all)
		start := min((p.page-1)*p.perPage, total)
		end := min(start+p.perPage, total)
		items := make([]map[string]any, 0, end-start)
		for _, l := range all[start:end] {
			items = append(items, c.render(l.id, l.rec))
		}
		s.mu.Unlock()
		renames := e.chaos.renames(spec, r.URL.Path)
		for _, it := range items {
			applyRenames(it, renames)
		}
		writeJSON(w, http.StatusOK, spec.listBody(items, p.page, p.perPage, total))
	}
}

// writeRecord serves PUT {collection}/{id} (upsert) and POST {collection}
// (create).
func (e *Endpoint) writeRecord(spec *apiSpec) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !e.admit(spec, w, r) {
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				writeError(w, spec, http.StatusRequestEntityTooLarge, codeBadRequest, "body is too large")
				return
			}
			writeError(w, spec, http.StatusBadRequest, codeBadRequest, "reading body: "+err.Error())
			return
		}
		var fields map[string]any
		dec := json.NewDecoder(bytes.NewReader(body))
		if err := dec.Decode(&fields); err != nil || fields == nil || dec.More() {
			writeError(w, spec, http.StatusBadRequest, codeBadRequest, "body must be one JSON object")
			return
		}
		res := e.sim.applyWrite(&writeRequest{
			spec:    spec,
			method:  r.Method,
			path:    r.URL.Path,
			id:      r.PathValue("id"),
			key:     r.Header.Get(HeaderIdempotencyKey),
			body:    body,
			fields:  fields,
			renames: e.chaos.renames(spec, r.URL.Path),
		})
		if res.event != nil {
			e.sim.hooks.notifyAsync(*res.event)
		}
		if res.status < 300 && e.chaos.loseWriteResponse(r.URL.Path) {
			writeHTML(w, http.StatusBadGateway)
			return
		}
		if res.location != "" {
			w.Header().Set("Location", res.location)
		}
		if res.replayed {
			w.Header().Set(HeaderIdempotentReplayed, "true")
		}
		writeRaw(w, res.status, res.body)
	}
}
