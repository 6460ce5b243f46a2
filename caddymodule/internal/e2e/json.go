package e2e

import (
	"encoding/json"
	"net/http"
	"testing"
)

// DecodeJSON decodes a response body as JSON into a T, failing the test
// with the body when it is not.
func DecodeJSON[T any](t testing.TB, r Response) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(r.Body), &v); err != nil {
		t.Fatalf("decoding %q: %v", r.Body, err)
	}
	return v
}

// AdminJSON is GET path on the admin API, wanting 200 and a JSON T (for
// example the core's Health from /craftedge/health).
func AdminJSON[T any](g *Gateway, path string) T {
	g.T.Helper()
	r := g.Admin(http.MethodGet, path, "")
	WantStatus(g.T, r, http.StatusOK)
	return DecodeJSON[T](g.T, r)
}
