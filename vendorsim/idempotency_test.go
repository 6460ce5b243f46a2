package vendorsim

import (
	"bytes"
	"net/http"
	"reflect"
	"sync"
	"testing"
)

func TestPutWithSameKeyHasOneEffect(t *testing.T) {
	h := newHarness(t, Options{Products: 2})
	body := `{"sku":"SKU-1","title":{"en":"Renamed"},"price":{"amount":100,"currency":"EUR"},"stock":3}`
	first := h.call(t, "PUT", "/v2/products/1", body, HeaderIdempotencyKey, "k-1")
	wantStatus(t, first, http.StatusOK)
	h.clock.Advance(1) // a second effect would change updated_at
	again := h.call(t, "PUT", "/v2/products/1", body, HeaderIdempotencyKey, "k-1")
	wantStatus(t, again, http.StatusOK)
	if !bytes.Equal(first.body, again.body) {
		t.Fatalf("replay differs:\n%s\n%s", first.body, again.body)
	}
	if first.header.Get(HeaderIdempotentReplayed) != "" || again.header.Get(HeaderIdempotentReplayed) != "true" {
		t.Errorf("Idempotent-Replayed: first %q, again %q", first.header.Get(HeaderIdempotentReplayed), again.header.Get(HeaderIdempotentReplayed))
	}
	if v := first.json(t)["version"]; v != 2.0 {
		t.Errorf("version %v, want 2", v)
	}
	if p, _ := h.sim.Get(KindProduct, "1"); p["version"] != 2 {
		t.Errorf("stored version %v, want 2", p["version"])
	}
	if got := h.sim.EffectsByKey(KindProduct); !reflect.DeepEqual(got, map[string]int{"k-1": 1}) {
		t.Errorf("EffectsByKey %v", got)
	}
	if n := h.sim.Replays(KindProduct, "k-1"); n != 1 {
		t.Errorf("Replays %d", n)
	}

	// Same key, different request: refused, no effect.
	r := h.call(t, "PUT", "/v2/products/1", `{"stock":4}`, HeaderIdempotencyKey, "k-1")
	wantStatus(t, r, http.StatusUnprocessableEntity)
	if len(h.sim.Writes()) != 1 {
		t.Errorf("writes %d, want 1", len(h.sim.Writes()))
	}
	// Keys are per API: the CRM has its own namespace.
	wantStatus(t, h.call(t, "POST", "/v1/contacts", `{"email":"x@example.com"}`, HeaderIdempotencyKey, "k-1"), http.StatusCreated)
}

func TestPostWithSameKeyCreatesOnce(t *testing.T) {
	h := newHarness(t, Options{Products: 2})
	body := `{"sku":"NEW","title":{"en":"New"}}`
	// Concurrent duplicates, as a client retrying after a timeout would send.
	var wg sync.WaitGroup
	results := make([]resp, 4)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := h.try("POST", h.srv.URL+"/v2/products", body, HeaderIdempotencyKey, "create-1")
			if err != nil {
				t.Error(err)
			}
			results[i] = r
		}()
	}
	wg.Wait()
	for _, r := range results {
		wantStatus(t, r, http.StatusCreated)
		if !bytes.Equal(r.body, results[0].body) || r.header.Get("Location") != "/v2/products/3" {
			t.Fatalf("response %s (Location %q) differs from %s", r.body, r.header.Get("Location"), results[0].body)
		}
	}
	if n := h.sim.Len(KindProduct); n != 3 {
		t.Fatalf("%d products, want 3", n)
	}
	if n := h.sim.Replays(KindProduct, "create-1"); n != 3 {
		t.Errorf("Replays %d, want 3", n)
	}
	// Without a key every POST is an effect.
	h.call(t, "POST", "/v2/products", body)
	h.call(t, "POST", "/v2/products", body)
	if n := h.sim.Len(KindProduct); n != 5 {
		t.Fatalf("%d products, want 5", n)
	}
}

func TestWriteLogKeepsArrivalOrderPerEntity(t *testing.T) {
	h := newHarness(t, Options{Contacts: 2})
	h.call(t, "PUT", "/v1/contacts/c-1", `{"firstname":"A"}`, HeaderIdempotencyKey, "a")
	h.call(t, "PUT", "/v1/contacts/c-2", `{"firstname":"X"}`, HeaderIdempotencyKey, "x")
	h.call(t, "PUT", "/v1/contacts/c-1", `{"firstname":"B"}`, HeaderIdempotencyKey, "b")
	h.call(t, "PUT", "/v1/contacts/c-1", `{"firstname":"A"}`, HeaderIdempotencyKey, "a") // replay
	r := h.call(t, "PUT", "/v1/contacts/c-9", `{"firstname":"N"}`)                       // upsert creates
	wantStatus(t, r, http.StatusCreated)

	ws := h.sim.WritesFor(KindContact, "c-1")
	var got []string
	for _, w := range ws {
		got = append(got, w.Key+"="+string(w.Body))
	}
	if want := []string{`a={"firstname":"A"}`, `b={"firstname":"B"}`}; !reflect.DeepEqual(got, want) {
		t.Fatalf("c-1 writes %v, want %v", got, want)
	}
	if ws[0].Version != 2 || ws[1].Version != 3 || ws[0].Seq >= ws[1].Seq {
		t.Errorf("versions/seq %+v", ws)
	}
	all := h.sim.Writes()
	if len(all) != 4 || all[3].ID != "c-9" || !all[3].Created || all[3].Version != 1 {
		t.Fatalf("log %+v", all)
	}
	if c, _ := h.sim.Get(KindContact, "c-1"); c["firstname"] != "B" {
		t.Errorf("c-1 is %v", c)
	}
	h.sim.ResetWrites()
	if len(h.sim.Writes()) != 0 {
		t.Error("ResetWrites kept entries")
	}
}

func TestWriteValidation(t *testing.T) {
	h := newHarness(t, Options{Products: 1})
	wantStatus(t, h.call(t, "PUT", "/v2/products/1", `not json`), 400)
	wantStatus(t, h.call(t, "PUT", "/v2/products/1", `[1]`), 400)
	wantStatus(t, h.call(t, "PUT", "/v2/products/1", `null`), 400)
	wantStatus(t, h.call(t, "PUT", "/v2/products/1", `{"id":"2"}`), 400)
	wantStatus(t, h.call(t, "PUT", "/v2/products/1", `{"id":"1","version":50,"updated_at":"x","stock":1}`), 200)
	p, _ := h.sim.Get(KindProduct, "1")
	if p["version"] != 2 || p["stock"] != 1.0 || p["updated_at"] == "x" {
		t.Errorf("managed fields taken from the body: %v", p)
	}
	if len(h.sim.Writes()) != 1 {
		t.Errorf("refused writes logged: %+v", h.sim.Writes())
	}
}
