package vendorsim

import "strconv"

// Route patterns of the e-commerce API, as counted in Stats.ByRoute.
const (
	RouteProductGet    = "GET /v2/products/{id}"
	RouteProductList   = "GET /v2/products"
	RouteProductPut    = "PUT /v2/products/{id}"
	RouteProductCreate = "POST /v2/products"
)

var commerceSpec = &apiSpec{
	api:          APICommerce,
	kind:         KindProduct,
	version:      "v2",
	collection:   "/v2/products",
	updatedField: "updated_at",
	listBody: func(items []map[string]any, page, perPage, total int) any {
		return map[string]any{
			"data":     items,
			"page":     page,
			"per_page": perPage,
			"has_more": page*perPage < total,
			"total":    total,
		}
	},
	errorBody: func(_ int, code, msg string) any {
		return map[string]any{"error": map[string]any{"code": code, "message": msg}}
	},
	renames: [][2]string{{"title", "name"}, {"price.amount", "price.value"}},
}

var (
	productAdjectives = []string{"Classic", "Organic", "Compact", "Deluxe", "Vintage", "Rugged", "Slim", "Bright", "Quiet", "Nordic"}
	productNouns      = []string{"Teapot", "Backpack", "Lamp", "Notebook", "Chair", "Kettle", "Scarf", "Mug", "Bicycle", "Clock"}
)

// seedProduct returns the fields of seeded product i (1-based).
func seedProduct(r *lockedRand, i int) map[string]any {
	title := productAdjectives[r.IntN(len(productAdjectives))] + " " + productNouns[r.IntN(len(productNouns))]
	return map[string]any{
		"sku":   "SKU-" + strconv.Itoa(i),
		"title": map[string]any{"en": title},
		"price": map[string]any{"amount": 500 + 100*r.IntN(200) + 99, "currency": "EUR"},
		"stock": r.IntN(100),
	}
}
