package caddymodule

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2"

	"github.com/craftedge/craftedge/vendors"
)

// LineageResponse is the body of GET /craftedge/lineage: what changed a
// record, newest first (at most vendors.MaxLineage changes are kept).
type LineageResponse struct {
	Vendor   string `json:"vendor"`
	Resource string `json:"resource"`
	ID       string `json:"id"`
	// Record is the stored record, if there is one.
	Record *vendors.Record `json:"record,omitempty"`
	// Changes are the record's changes: source (sync, webhook, outbox),
	// job, delivery, versions, deletion.
	Changes []vendors.Change `json:"changes"`
}

// handleLineage serves GET /craftedge/lineage?vendor=&resource=&id=.
func (adminAPI) handleLineage(w http.ResponseWriter, r *http.Request) error {
	if err := requireMethod(r, http.MethodGet); err != nil {
		return err
	}
	app, err := runningApp()
	if err != nil {
		return err
	}
	q := r.URL.Query()
	vendor, resource, id := q.Get("vendor"), q.Get("resource"), q.Get("id")
	if vendor == "" || resource == "" || id == "" {
		return badRequest(errors.New("vendor, resource and id are required"))
	}
	vc, ok := app.Vendors[vendor]
	if !ok {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("unknown vendor %q", vendor)}
	}
	if _, ok := vc.Resources[resource]; !ok {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("unknown resource %q of vendor %q", resource, vendor)}
	}
	changes, err := app.records.Lineage(vendor, resource, id)
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err}
	}
	resp := LineageResponse{Vendor: vendor, Resource: resource, ID: id, Changes: changes}
	rec, err := app.records.Get(vendor, resource, id)
	switch {
	case err == nil:
		rec = app.sealing.redact(rec) // lineage is operator output: no sensitive values
		resp.Record = &rec
	case errors.Is(err, vendors.ErrNotFound):
		if len(changes) == 0 {
			return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no record %s/%s id %q", vendor, resource, id)}
		}
	default:
		return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err}
	}
	return writeJSON(w, http.StatusOK, resp)
}
