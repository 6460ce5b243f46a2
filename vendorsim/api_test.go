package vendorsim

import (
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strconv"
	"testing"
	"time"
)

func TestSeedIsDeterministic(t *testing.T) {
	a := New(Options{Products: 5, Contacts: 3, Seed: 7})
	b := New(Options{Products: 5, Contacts: 3, Seed: 7})
	c := New(Options{Products: 5, Contacts: 3, Seed: 8})
	defer a.Close()
	defer b.Close()
	defer c.Close()
	differs := false
	for i := 1; i <= 5; i++ {
		pa, _ := a.Get(KindProduct, strconv.Itoa(i))
		pb, _ := b.Get(KindProduct, strconv.Itoa(i))
		pc, _ := c.Get(KindProduct, strconv.Itoa(i))
		if !reflect.DeepEqual(pa, pb) {
			t.Fatalf("same seed, product %d differs: %v vs %v", i, pa, pb)
		}
		differs = differs || !reflect.DeepEqual(pa, pc)
	}
	if !differs {
		t.Error("different seeds gave identical products")
	}
	if a.Len(KindProduct) != 5 || a.Len(KindContact) != 3 {
		t.Errorf("Len = %d products, %d contacts", a.Len(KindProduct), a.Len(KindContact))
	}
}

func TestGetProductAndContactShapes(t *testing.T) {
	h := newHarness(t, Options{Products: 3, Contacts: 2})
	r := h.call(t, "GET", "/v2/products/3", nil)
	wantStatus(t, r, http.StatusOK)
	if r.header.Get(HeaderAPIVersion) != "v2" {
		t.Errorf("API-Version %q", r.header.Get(HeaderAPIVersion))
	}
	p := r.json(t)
	if p["id"] != "3" || p["sku"] != "SKU-3" || p["version"] != 1.0 {
		t.Errorf("product %v", p)
	}
	if _, ok := p["title"].(map[string]any)["en"].(string); !ok {
		t.Errorf("title.en missing: %v", p)
	}
	price := p["price"].(map[string]any)
	if _, ok := price["amount"].(float64); !ok || price["currency"] != "EUR" {
		t.Errorf("price %v", price)
	}
	if _, ok := p["stock"].(float64); !ok {
		t.Errorf("stock missing: %v", p)
	}
	ts, err := time.Parse(time.RFC3339Nano, p["updated_at"].(string))
	if err != nil || !ts.Equal(DefaultSeedTime.Add(3*time.Second)) {
		t.Errorf("updated_at %v (%v)", p["updated_at"], err)
	}

	r = h.call(t, "GET", "/v1/contacts/c-2", nil)
	wantStatus(t, r, http.StatusOK)
	c := r.json(t)
	for _, f := range []string{"email", "firstname", "lastname", "updatedAt"} {
		if _, ok := c[f].(string); !ok {
			t.Errorf("contact field %s missing: %v", f, c)
		}
	}
	if c["id"] != "c-2" || c["version"] != 1.0 || r.header.Get(HeaderAPIVersion) != "v1" {
		t.Errorf("contact %v", c)
	}
}

func TestNotFoundIsJSONInEachVendorsShape(t *testing.T) {
	h := newHarness(t, Options{Products: 1, Contacts: 1})
	r := h.call(t, "GET", "/v2/products/99", nil)
	wantStatus(t, r, http.StatusNotFound)
	if e, _ := r.json(t)["error"].(map[string]any); e["code"] != "not_found" {
		t.Errorf("commerce 404 body %s", r.body)
	}
	r = h.call(t, "GET", "/v1/contacts/c-99", nil)
	wantStatus(t, r, http.StatusNotFound)
	if m := r.json(t); m["category"] != "OBJECT_NOT_FOUND" || m["status"] != "error" {
		t.Errorf("crm 404 body %s", r.body)
	}
}

func TestAuth(t *testing.T) {
	h := newHarness(t, Options{Products: 1, Contacts: 1})
	cases := []struct {
		name, path, auth string
		want             int
	}{
		{"none", "/v2/products/1", "", 401},
		{"wrong token", "/v2/products/1", "Bearer nope", 401},
		{"not bearer", "/v2/products/1", "Basic " + DefaultCommerceToken, 401},
		{"crm token on commerce", "/v2/products/1", "Bearer " + DefaultCRMToken, 401},
		{"commerce token on crm", "/v1/contacts/c-1", "Bearer " + DefaultCommerceToken, 401},
		{"commerce ok", "/v2/products/1", "Bearer " + DefaultCommerceToken, 200},
		{"crm ok", "/v1/contacts/c-1", "Bearer " + DefaultCRMToken, 200},
		{"list needs auth", "/v2/products", "", 401},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := h.call(t, "GET", c.path, nil, "Authorization", c.auth)
			wantStatus(t, r, c.want)
			if c.want == 401 && r.header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
	custom := newHarness(t, Options{Products: 1, CommerceToken: "mine"})
	wantStatus(t, custom.call(t, "GET", "/v2/products/1", nil, "Authorization", "Bearer mine"), 200)
	wantStatus(t, custom.call(t, "GET", "/v2/products/1", nil), 401)
}

func TestAcceptVersionIsPinned(t *testing.T) {
	h := newHarness(t, Options{Products: 1, Contacts: 1})
	wantStatus(t, h.call(t, "GET", "/v2/products/1", nil, HeaderAcceptVersion, "v2"), 200)
	wantStatus(t, h.call(t, "GET", "/v2/products/1", nil, HeaderAcceptVersion, "v3"), 400)
	wantStatus(t, h.call(t, "GET", "/v1/contacts/c-1", nil, HeaderAcceptVersion, "v1"), 200)
	wantStatus(t, h.call(t, "GET", "/v1/contacts/c-1", nil, HeaderAcceptVersion, "v2"), 400)
	wantStatus(t, h.call(t, "GET", "/v1/products/1", nil), 404) // wrong path version
}

// listIDs pages through a commerce list and returns the ids in order.
func listCommerce(t *testing.T, h *harness, query string, perPage int) (ids []string, pages int) {
	t.Helper()
	for page := 1; ; page++ {
		r := h.call(t, "GET", fmt.Sprintf("/v2/products?%spage=%d&per_page=%d", query, page, perPage), nil)
		wantStatus(t, r, 200)
		m := r.json(t)
		if m["page"] != float64(page) || m["per_page"] != float64(perPage) {
			t.Fatalf("envelope %s", r.body)
		}
		for _, it := range m["data"].([]any) {
			ids = append(ids, it.(map[string]any)["id"].(string))
		}
		pages++
		if m["has_more"] != true {
			if int(m["total"].(float64)) != len(ids) {
				t.Fatalf("total %v, got %d ids", m["total"], len(ids))
			}
			return ids, pages
		}
	}
}

func TestCommercePaginationAndUpdatedSince(t *testing.T) {
	h := newHarness(t, Options{Products: 7})
	ids, pages := listCommerce(t, h, "", 3)
	if want := []string{"1", "2", "3", "4", "5", "6", "7"}; !reflect.DeepEqual(ids, want) || pages != 3 {
		t.Fatalf("ids %v in %d pages", ids, pages)
	}

	// updated_since is strict: the record at exactly that instant is excluded.
	since := DefaultSeedTime.Add(4 * time.Second).Format(time.RFC3339)
	ids, _ = listCommerce(t, h, "updated_since="+since+"&", 2)
	if want := []string{"5", "6", "7"}; !reflect.DeepEqual(ids, want) {
		t.Fatalf("since %s: ids %v, want %v", since, ids, want)
	}

	// An update moves a record to the end (the fake clock is after the seed).
	if v, err := h.sim.Update(KindProduct, "2", func(f map[string]any) { f["stock"] = 0 }); err != nil || v != 2 {
		t.Fatalf("Update = %d, %v", v, err)
	}
	ids, _ = listCommerce(t, h, "", 100)
	if want := []string{"1", "3", "4", "5", "6", "7", "2"}; !reflect.DeepEqual(ids, want) {
		t.Fatalf("after update: %v, want %v", ids, want)
	}
	last := h.clock.Now().Format(time.RFC3339Nano)
	ids, _ = listCommerce(t, h, "updated_since="+last+"&", 10)
	if len(ids) != 0 {
		t.Fatalf("since the last update: %v, want none", ids)
	}

	// Ties on updated_at are ordered by id; a page past the end is empty.
	h.sim.Update(KindProduct, "5", nil)
	h.sim.Update(KindProduct, "3", nil)
	ids, _ = listCommerce(t, h, "updated_since="+DefaultSeedTime.Add(time.Hour).Format(time.RFC3339)+"&", 10)
	if want := []string{"2", "3", "5"}; !reflect.DeepEqual(ids, want) {
		t.Fatalf("ties: %v, want %v", ids, want)
	}
	r := h.call(t, "GET", "/v2/products?page=9&per_page=5", nil)
	if m := r.json(t); len(m["data"].([]any)) != 0 || m["has_more"] != false || m["total"] != 7.0 {
		t.Fatalf("page past the end: %s", r.body)
	}
}

func TestCRMPagination(t *testing.T) {
	h := newHarness(t, Options{Contacts: 5})
	var ids []string
	page, calls := 1, 0
	for {
		r := h.call(t, "GET", fmt.Sprintf("/v1/contacts?per_page=2&page=%d", page), nil)
		wantStatus(t, r, 200)
		calls++
		m := r.json(t)
		for _, it := range m["results"].([]any) {
			ids = append(ids, it.(map[string]any)["id"].(string))
		}
		paging, ok := m["paging"].(map[string]any)
		if !ok {
			t.Fatalf("paging missing: %s", r.body)
		}
		next, ok := paging["next"].(map[string]any)
		if !ok {
			break
		}
		page = int(next["page"].(float64))
	}
	if want := []string{"c-1", "c-2", "c-3", "c-4", "c-5"}; !reflect.DeepEqual(ids, want) || calls != 3 {
		t.Fatalf("ids %v in %d calls", ids, calls)
	}
	since := DefaultSeedTime.Add(3 * time.Second).Format(time.RFC3339Nano)
	r := h.call(t, "GET", "/v1/contacts?updated_since="+since, nil)
	if got := len(r.json(t)["results"].([]any)); got != 2 {
		t.Fatalf("since c-3: %d results, want 2", got)
	}
}

func TestListRejectsBadParameters(t *testing.T) {
	h := newHarness(t, Options{Products: 1, Contacts: 1})
	for _, q := range []string{"page=0", "page=x", "per_page=0", "per_page=101", "updated_since=yesterday"} {
		wantStatus(t, h.call(t, "GET", "/v2/products?"+q, nil), 400)
		r := h.call(t, "GET", "/v1/contacts?"+q, nil)
		wantStatus(t, r, 400)
		if r.json(t)["category"] != "VALIDATION_ERROR" {
			t.Errorf("crm 400 body %s", r.body)
		}
	}
}

func TestUpdateBumpsVersionAndTimestamp(t *testing.T) {
	h := newHarness(t, Options{Contacts: 1})
	h.clock.Advance(time.Minute)
	v, err := h.sim.Update(KindContact, "c-1", func(f map[string]any) {
		f["email"] = "new@example.com"
		f["version"] = 99 // managed: ignored
	})
	if err != nil || v != 2 {
		t.Fatalf("Update = %d, %v", v, err)
	}
	c, _ := h.sim.Get(KindContact, "c-1")
	if c["email"] != "new@example.com" || c["version"] != 2 || c["updatedAt"] != h.clock.Now().Format(time.RFC3339Nano) {
		t.Fatalf("after update: %v", c)
	}
	if _, err := h.sim.Update(KindContact, "c-9", nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown id: %v", err)
	}
	if _, err := h.sim.Update("order", "1", nil); !errors.Is(err, ErrUnknownKind) {
		t.Errorf("unknown kind: %v", err)
	}
}
