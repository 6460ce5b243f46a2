package vendorsim

import (
	"net/http"
	"strconv"
	"strings"
)

// Route patterns of the CRM API, as counted in Stats.ByRoute.
const (
	RouteContactGet    = "GET /v1/contacts/{id}"
	RouteContactList   = "GET /v1/contacts"
	RouteContactPut    = "PUT /v1/contacts/{id}"
	RouteContactCreate = "POST /v1/contacts"
)

// crmCategories maps the generic error codes onto the CRM's categories.
var crmCategories = map[string]string{
	codeBadRequest:   "VALIDATION_ERROR",
	codeUnauthorized: "INVALID_AUTHENTICATION",
	codeNotFound:     "OBJECT_NOT_FOUND",
	codeVersion:      "VALIDATION_ERROR",
	codeKeyReused:    "CONFLICT",
	codeRateLimited:  "RATE_LIMITS",
	codeInternal:     "INTERNAL_ERROR",
}

var crmSpec = &apiSpec{
	api:          APICRM,
	kind:         KindContact,
	version:      "v1",
	collection:   "/v1/contacts",
	updatedField: "updatedAt",
	idPrefix:     "c-",
	listBody: func(items []map[string]any, page, perPage, total int) any {
		paging := map[string]any{}
		if page*perPage < total {
			paging["next"] = map[string]any{"page": page + 1}
		}
		return map[string]any{"results": items, "paging": paging}
	},
	errorBody: func(status int, code, msg string) any {
		cat, ok := crmCategories[code]
		if !ok {
			cat = strings.ToUpper(strings.ReplaceAll(http.StatusText(status), " ", "_"))
		}
		return map[string]any{"status": "error", "category": cat, "message": msg}
	},
	renames: [][2]string{{"firstname", "first_name"}, {"lastname", "last_name"}},
}

var (
	contactFirstNames = []string{"Ada", "Ben", "Chloe", "Dmitri", "Elif", "Farid", "Greta", "Hiro", "Ines", "Jonas"}
	contactLastNames  = []string{"Lovelace", "Berg", "Martin", "Ivanov", "Yilmaz", "Haddad", "Nilsson", "Tanaka", "Costa", "Weber"}
)

// seedContact returns the fields of seeded contact i (1-based).
func seedContact(r *lockedRand, i int) map[string]any {
	first := contactFirstNames[r.IntN(len(contactFirstNames))]
	last := contactLastNames[r.IntN(len(contactLastNames))]
	return map[string]any{
		"email":     strings.ToLower(first+"."+last) + strconv.Itoa(i) + "@example.com",
		"firstname": first,
		"lastname":  last,
	}
}
