package vendors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

func decode(t *testing.T, s string) any {
	t.Helper()
	v, err := decodeJSON([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestMapItem(t *testing.T) {
	m := mapper{vendor: "crm", resource: "contacts", res: Resource{
		ID: "id", UpdatedAt: "updatedAt",
		Fields: map[string]Field{
			"email":  {Path: "properties.email", Required: true, Type: "string"},
			"score":  {Path: "properties.score", Type: "number"},
			"first":  {Path: "names.0", Type: "string"},
			"since":  {Path: "createdAt", Type: "time"},
			"active": {Path: "active", Type: "bool"},
		},
		Tags: []string{"crm:contact:{id}", "crm:email:{email}", "crm:score:{score}", "crm:missing:{nickname}"},
	}}
	item := decode(t, `{"id":42,"updatedAt":1740830400.5,"properties":{"email":"a@example.com","score":7.25},
		"names":["Ada","Lovelace"],"createdAt":"2025-01-01T10:00:00+02:00","active":true}`)
	rec, err := m.mapItem(item, t0)
	if err != nil {
		t.Fatal(err)
	}
	if rec.ID != "42" || !strings.HasPrefix(rec.Version, "sha256:") {
		t.Errorf("id %q version %q", rec.ID, rec.Version)
	}
	if want := time.Unix(1740830400, 5e8).UTC(); !rec.UpdatedAt.Equal(want) {
		t.Errorf("unix updated_at %v, want %v", rec.UpdatedAt, want)
	}
	if rec.Fields["first"] != "Ada" || rec.Fields["score"] != json.Number("7.25") ||
		rec.Fields["since"] != "2025-01-01T08:00:00Z" || rec.Fields["active"] != true {
		t.Errorf("fields %#v", rec.Fields)
	}
	if got := fmt.Sprint(rec.Tags); got != "[crm:contact:42 crm:email:a@example.com crm:score:7.25]" {
		t.Errorf("tags %s", got)
	}
	// The hash version is stable and follows content.
	again, _ := m.mapItem(decode(t, `{"active":true,"createdAt":"2025-01-01T10:00:00+02:00","id":42,"names":["Ada","Lovelace"],
		"properties":{"score":7.25,"email":"a@example.com"},"updatedAt":1740830400.5}`), t0)
	changed, _ := m.mapItem(decode(t, `{"id":42,"updatedAt":1740830401,"properties":{"email":"b@example.com"}}`), t0)
	if again.Version != rec.Version || changed.Version == rec.Version {
		t.Errorf("hash versions: %s %s %s", rec.Version, again.Version, changed.Version)
	}

	cases := map[string]struct{ field, path, reason string }{
		`{"id":42,"updatedAt":1,"properties":{}}`:                                  {"email", "properties.email", "missing"},
		`{"id":42,"updatedAt":1,"properties":{"email":null}}`:                      {"email", "properties.email", "null"},
		`{"id":42,"updatedAt":1,"properties":{"email":5}}`:                         {"email", "properties.email", "expected string, got number"},
		`{"id":42,"updatedAt":1,"properties":{"email":"x","score":"high"}}`:        {"score", "properties.score", "expected number, got string"},
		`{"id":{"v":1},"updatedAt":1}`:                                             {"id", "id", "expected string or number, got object"},
		`{"updatedAt":1}`:                                                          {"id", "id", "missing"},
		`{"id":"1","updatedAt":"yesterday","properties":{"email":"x"}}`:            {"updated_at", "updatedAt", `expected an RFC 3339 time, got "yesterday"`},
		`{"id":"1","updatedAt":1,"properties":{"email":"x"},"createdAt":"monday"}`: {"since", "createdAt", `expected an RFC 3339 time, got "monday"`},
	}
	for in, want := range cases {
		_, err := m.mapItem(decode(t, in), t0)
		var me *MappingError
		if !errors.As(err, &me) || me.Field != want.field || me.Path != want.path || me.Reason != want.reason {
			t.Errorf("%s: got %v, want field %q path %q: %s", in, err, want.field, want.path, want.reason)
			continue
		}
		if !strings.Contains(err.Error(), `"`+want.field+`"`) || !strings.Contains(err.Error(), `"`+want.path+`"`) {
			t.Errorf("message does not name field and path: %v", err)
		}
	}
}

// contactsServer serves CRM-style pages: {"results":[...],"paging":{"next":{"page":n}}},
// "paging":{} on the last page; or, with emptyEnds, just {"results":[...]}.
func contactsServer(t *testing.T, total, per int, emptyEnds bool) (*httptest.Server, *[]int) {
	var pages []int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		page, _ := strconv.Atoi(r.URL.Query().Get("page"))
		pages = append(pages, page)
		results := []any{}
		for i := (page-1)*per + 1; i <= min(page*per, total); i++ {
			results = append(results, map[string]any{"id": fmt.Sprintf("c-%d", i), "email": fmt.Sprintf("c%d@example.com", i),
				"version": i, "updatedAt": t0.Add(time.Duration(i) * time.Second).Format(time.RFC3339)})
		}
		body := map[string]any{"results": results}
		if !emptyEnds {
			paging := map[string]any{}
			if page*per < total {
				paging["next"] = map[string]any{"page": page + 1}
			}
			body["paging"] = paging
		}
		json.NewEncoder(w).Encode(body)
	}))
	t.Cleanup(srv.Close)
	return srv, &pages
}

func contactsConfig(url string, list ListSpec) Config {
	list.Path = "/contacts?updated_since={since}&page={page}&per_page={per_page}"
	list.Items = "results"
	list.PerPage = 2
	return Config{Name: "crm", BaseURLs: []string{url}, Version: APIVersion{Path: "/v1"},
		Rate: RateLimit{PerSecond: 100}, Enabled: true,
		Resources: map[string]Resource{"contacts": {
			List: &list, ID: "id", Version: "version", UpdatedAt: "updatedAt",
			Fields: map[string]Field{"email": {Path: "email", Required: true}},
			Tags:   []string{"crm:contact:{id}"},
		}},
	}
}

func TestSyncNextPageAndEmptyPageEnds(t *testing.T) {
	for _, tc := range []struct {
		name      string
		list      ListSpec
		emptyEnds bool
		pages     string
	}{
		{"next page field", ListSpec{NextPage: "paging.next.page"}, false, "[1 2 3]"},
		{"empty page ends", ListSpec{EmptyPageEnds: true}, true, "[1 2 3 4]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, pages := contactsServer(t, 5, 2, tc.emptyEnds)
			c, _ := newTestClient(t, contactsConfig(srv.URL, tc.list), nil)
			rs, _ := NewRecords(openDB(t, ""))
			var st SyncState
			if err := Sync(context.Background(), c, rs, "contacts", &st, SyncOptions{}); err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprint(*pages); got != tc.pages {
				t.Errorf("pages %s, want %s", got, tc.pages)
			}
			all, _ := rs.List("crm", "contacts", time.Time{}, 1, 10)
			if len(all.Records) != 5 || all.Records[4].ID != "c-5" || all.Records[0].Fields["email"] != "c1@example.com" {
				t.Errorf("records %+v", all.Records)
			}
			if cur, _ := rs.Cursor("crm", "contacts"); !cur.Equal(t0.Add(5 * time.Second)) {
				t.Errorf("cursor %v", cur)
			}
		})
	}
}

func TestListRejectsANextPageThatDoesNotAdvance(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"results":[{"id":"c-1","email":"x","version":1,"updatedAt":"2025-01-01T00:00:00Z"}],"paging":{"next":{"page":1}}}`)
	}))
	t.Cleanup(srv.Close)
	c, _ := newTestClient(t, contactsConfig(srv.URL, ListSpec{NextPage: "paging.next.page"}), nil)
	_, err := c.List(context.Background(), "contacts", time.Time{}, 1)
	var me *MappingError
	if !errors.As(err, &me) || me.Field != "next_page" {
		t.Fatalf("want a next_page MappingError, got %v", err)
	}
}

func TestSinceFormats(t *testing.T) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 600, time.FixedZone("x", 3600))
	for format, want := range map[string]string{"rfc3339": "2025-01-02T02:04:05.0000006Z", "unix": "1735783445", "unix_ms": "1735783445000"} {
		if got := formatSince(at, format); got != want {
			t.Errorf("%s: %s, want %s", format, got, want)
		}
	}
	if got := expandURL("/p/{id}?since={since}", map[string]string{"id": "a/b c", "since": "2025-01-02T02:04:05+01:00"}); got != "/p/a%2Fb%20c?since=2025-01-02T02%3A04%3A05%2B01%3A00" {
		t.Errorf("expandURL: %s", got)
	}
}
