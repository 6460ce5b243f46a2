package caddymodule

import (
	"testing"
	"time"

	"github.com/craftedge/craftedge/vendors"
)

// Push keys name one record and one state even when the vendor's ids and
// versions contain the key's separator: otherwise the second record's push
// would join the first's job and never be sent.
func TestPushKeyIDsAndVersionsWithColons(t *testing.T) {
	at := time.Date(2026, 12, 4, 3, 0, 0, 0, time.UTC)
	rec := func(id, version string) vendors.Record {
		return vendors.Record{Vendor: "shop", Resource: "product", ID: id, Version: version, UpdatedAt: at}
	}
	a := pushRequest(rec("a:1", "2"), "search", 0)
	b := pushRequest(rec("a", "1:2"), "search", 0)
	if a.Key == b.Key {
		t.Fatalf("two records share the push key %q", a.Key)
	}
	// Ordinary versions keep the keys they had.
	if got, want := pushRequest(rec("7", "3"), "search", 0).Key, "push:search:shop:product:7:3:1796353200000000000"; got != want {
		t.Fatalf("key %q, want %q", got, want)
	}
}
