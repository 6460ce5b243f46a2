package vendors

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/craftedge/craftedge/sealed"
)

func testRing(t *testing.T, current string, ids ...string) *sealed.Keyring {
	t.Helper()
	var keys []sealed.Key
	for _, id := range ids {
		keys = append(keys, sealed.Key{ID: id, Secret: bytes.Repeat([]byte(id[len(id)-1:]), sealed.KeySize)})
	}
	kr, err := sealed.NewKeyring(keys, current)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

var priceSensitive = SensitiveFields{"commerce": {"products": {"title"}}}

func TestRecordsSealSensitiveFields(t *testing.T) {
	path := filepath.Join(t.TempDir(), "craftedge.db")
	db := openDB(t, path)
	rs, err := NewRecords(db)
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.UseSealing(nil, priceSensitive); !errors.Is(err, ErrNoKeys) {
		t.Fatalf("UseSealing without keys: %v", err)
	}
	if err := rs.UseSealing(testRing(t, "", "k1"), priceSensitive); err != nil {
		t.Fatal(err)
	}
	r := rec("a", 1, t0)
	r.Fields["title"] = "Plaintext-Title-4711"
	if _, err := rs.Put(r); err != nil {
		t.Fatal(err)
	}
	got, err := rs.Get("commerce", "products", "a")
	if err != nil || got.Fields["title"] != "Plaintext-Title-4711" || got.Fields["price"].(interface{ String() string }).String() != "12.50" {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	// A version change through markDeleted re-seals with the fields kept.
	if changed, err := rs.MarkDeleted("commerce", "products", "a", t0.Add(time.Minute)); err != nil || !changed {
		t.Fatalf("MarkDeleted: %v %v", changed, err)
	}
	page, err := rs.List("commerce", "products", time.Time{}, 1, 10)
	if err != nil || len(page.Records) != 1 || page.Records[0].Fields["title"] != "Plaintext-Title-4711" {
		t.Fatalf("List = %+v, %v", page, err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	if bytes.Contains(raw, []byte("Plaintext-Title-4711")) {
		t.Fatal("the plaintext of a sensitive field is in the bbolt file")
	}
	if !bytes.Contains(raw, []byte(sealed.Prefix+"k1:")) {
		t.Fatal("no k1 ciphertext in the file")
	}
}

func TestRecordsResealRotatesAndKeyGoneIsAnError(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "craftedge.db"))
	rs, _ := NewRecords(db)
	// Stored before the field was sensitive: in clear.
	for _, id := range []string{"a", "b"} {
		r := rec(id, 1, t0)
		r.Fields["title"] = "T-" + id
		rs.Put(r)
	}
	rs.UseSealing(testRing(t, "", "k1"), priceSensitive)
	rep, err := rs.Reseal()
	if err != nil || rep.Scanned != 2 || rep.Resealed != 2 || rep.Failed != 0 {
		t.Fatalf("Reseal (clear → k1) = %+v, %v", rep, err)
	}
	// Idempotent.
	if rep, _ := rs.Reseal(); rep.Resealed != 0 {
		t.Fatalf("second Reseal = %+v", rep)
	}
	// Key 2 current: k1 values still open, Reseal moves them to k2.
	rs.UseSealing(testRing(t, "", "k1", "k2"), priceSensitive)
	if got, err := rs.Get("commerce", "products", "a"); err != nil || got.Fields["title"] != "T-a" {
		t.Fatalf("Get with k1 and k2 = %+v, %v", got, err)
	}
	if rep, err := rs.Reseal(); err != nil || rep.Resealed != 2 {
		t.Fatalf("Reseal (k1 → k2) = %+v, %v", rep, err)
	}
	rs.UseSealing(testRing(t, "", "k2"), priceSensitive)
	if got, err := rs.Get("commerce", "products", "b"); err != nil || got.Fields["title"] != "T-b" {
		t.Fatalf("Get with k2 only = %+v, %v", got, err)
	}
	// Key gone: a clear error naming the key, never a wrong value; Reseal
	// counts it and goes on.
	rs.UseSealing(testRing(t, "", "k3"), priceSensitive)
	_, err = rs.Get("commerce", "products", "a")
	if !errors.Is(err, sealed.ErrUnknownKey) || !strings.Contains(err.Error(), `"k2"`) || !strings.Contains(err.Error(), `"title"`) {
		t.Fatalf("Get with the key gone: %v", err)
	}
	if rep, err := rs.Reseal(); err != nil || rep.Failed != 2 || len(rep.Errors) != 2 {
		t.Fatalf("Reseal with the key gone = %+v, %v", rep, err)
	}
	// A write over a record whose key is gone still works (the old
	// record is not opened).
	r := rec("a", 2, t0.Add(time.Hour))
	r.Fields["title"] = "T-a2"
	if changed, err := rs.Put(r); err != nil || !changed {
		t.Fatalf("Put over an unopenable record: %v %v", changed, err)
	}
}

func TestSensitiveConfigErrors(t *testing.T) {
	r := productsResource()
	r.Fields["sku"] = Field{Path: "sku"}
	r.Sensitive = []string{"nope", "sku", "sku"}
	r.Tags = append(r.Tags, "sku:{sku}")
	errs := r.sensitiveErrors()
	var all []string
	for _, e := range errs {
		all = append(all, e.Error())
	}
	s := strings.Join(all, "\n")
	for _, want := range []string{`"nope" is not a mapped field`, `"sku" is listed twice`, `"sku" is used in tags`} {
		if !strings.Contains(s, want) {
			t.Errorf("errors %q lack %q", s, want)
		}
	}
	r = productsResource()
	r.Fields["ident"] = Field{Path: r.ID}
	r.Sensitive = []string{"ident"}
	if errs := r.sensitiveErrors(); len(errs) != 1 || !strings.Contains(errs[0].Error(), "id mapping") {
		t.Fatalf("errors = %v", errs)
	}
}

func TestContainsSensitive(t *testing.T) {
	keys := map[string]bool{"email": true}
	for body, want := range map[string]bool{
		`{"id":1,"customer":{"email":"a@b"}}`: true,
		`{"data":[{"id":1},{"email":null}]}`:  true,
		`{"id":1,"title":"email"}`:            false,
		`not json`:                            true,
	} {
		if got := ContainsSensitive([]byte(body), keys); got != want {
			t.Errorf("ContainsSensitive(%s) = %v", body, got)
		}
	}
	if ContainsSensitive([]byte(`{"email":1}`), nil) {
		t.Error("no keys: true")
	}
}

func TestSensitiveValuesNotQuotedInErrors(t *testing.T) {
	// A vendor answering a write with a 422 that echoes the item.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnprocessableEntity)
		w.Write([]byte(`{"error":"invalid","item":{"title":{"en":"Echoed-Secret-99"}}}`))
	}))
	defer srv.Close()
	cfg := testConfig(srv.URL)
	res := cfg.Resources["products"]
	res.Sensitive = []string{"title"}
	cfg.Resources["products"] = res
	c, _ := newTestClient(t, cfg, nil)
	_, err := c.Upsert(context.Background(), "products", "1", []byte(`{"title":{"en":"Echoed-Secret-99"}}`), "k")
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 422 || strings.Contains(err.Error(), "Echoed-Secret-99") {
		t.Fatalf("Upsert error = %v", err)
	}

	// A mapping error on a sensitive field does not quote the value.
	res.Fields["title"] = Field{Path: "title.en", Type: "time"}
	m := mapper{vendor: "commerce", resource: "products", res: res}
	_, err = m.mapItem(decode(t, `{"id":"1","version":1,"updated_at":"2026-01-01T00:00:00Z","title":{"en":"Mapped-Secret-98"},"price":{"amount":1}}`), t0)
	var me *MappingError
	if !errors.As(err, &me) || me.Field != "title" || strings.Contains(err.Error(), "Mapped-Secret-98") {
		t.Fatalf("mapping error = %v", err)
	}
}
