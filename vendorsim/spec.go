package vendorsim

import (
	"net/http"
	"strings"
)

// apiSpec is what differs between the two simulated APIs.
type apiSpec struct {
	api          API
	kind         Kind
	version      string // pinned version: path prefix and Accept-Version
	collection   string // path of the collection, e.g. "/v2/products"
	updatedField string // name of the updated timestamp field
	idPrefix     string // prefix of assigned ids
	// listBody builds a list page.
	listBody func(items []map[string]any, page, perPage, total int) any
	// errorBody builds an error body for a status and a generic code.
	errorBody func(status int, code, msg string) any
	// renames are the field renames of the schema change, old path to new
	// path (dotted for nested fields), applied in order.
	renames [][2]string
}

// Generic error codes; each API maps them onto its own error shape.
const (
	codeBadRequest   = "bad_request"
	codeUnauthorized = "unauthorized"
	codeNotFound     = "not_found"
	codeVersion      = "unsupported_version"
	codeKeyReused    = "idempotency_key_reused"
	codeRateLimited  = "rate_limited"
	codeInternal     = "internal_error"
)

var specs = []*apiSpec{commerceSpec, crmSpec}

// specFor returns the spec of an API, or nil.
func specFor(api API) *apiSpec {
	for _, s := range specs {
		if s.api == api {
			return s
		}
	}
	return nil
}

// specOfKind returns the spec of a record kind, or nil.
func specOfKind(kind Kind) *apiSpec {
	for _, s := range specs {
		if s.kind == kind {
			return s
		}
	}
	return nil
}

// specForPath returns the spec whose collection contains path, or nil.
func specForPath(path string) *apiSpec {
	for _, s := range specs {
		if path == s.collection || strings.HasPrefix(path, s.collection+"/") {
			return s
		}
	}
	return nil
}

// writeError answers with an error in the shape of spec's API, or in the
// commerce shape when spec is nil.
func writeError(w http.ResponseWriter, spec *apiSpec, status int, code, msg string) {
	if spec == nil {
		spec = commerceSpec
	}
	writeJSON(w, status, spec.errorBody(status, code, msg))
}
