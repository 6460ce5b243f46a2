package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/craftedge/craftedge/vendors"
)

// TestQuotaHoldsForVendorClientsOnThreeNodes: three nodes, each with its
// own vendor client (a local bucket far above the rate) sharing the
// vendor's cluster quota, hammer the vendor: it receives exactly the
// quota's limit in the window. Counted, with an injected clock: a client
// asked to wait for the next window stops instead.
func TestQuotaHoldsForVendorClientsOnThreeNodes(t *testing.T) {
	var hits atomic.Int64
	vendor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = w.Write([]byte(`{}`))
	}))
	defer vendor.Close()
	srv := startServer(t, "solo", "", nil)
	clock := &testClock{t: time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)}
	errNextWindow := errors.New("asked to wait for the next window")
	var clients []*vendors.Client
	for _, name := range []string{"a", "b", "c"} {
		n := startNode(t, Config{NodeName: name, URLs: []string{srv.url()}}, &recorder{})
		waitState(t, n, StateReady)
		q, err := n.Quota("shop", QuotaConfig{Limit: 30, Window: time.Second, Block: 3, Now: clock.now})
		if err != nil {
			t.Fatal(err)
		}
		c, err := vendors.NewClient(vendors.Config{Name: "shop", BaseURLs: []string{vendor.URL}, Timeout: 5 * time.Second,
			Rate: vendors.RateLimit{PerSecond: 1e6, Burst: 1e6}, Enabled: true},
			vendors.ClientOptions{Now: clock.now, Sleep: func(context.Context, time.Duration) error { return errNextWindow }})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetQuota(q)
		clients = append(clients, c)
	}
	var wg sync.WaitGroup
	var sent atomic.Int64
	for i, c := range clients {
		for w := range 4 {
			wg.Go(func() {
				for j := 0; ; j++ {
					_, err := c.Do(context.Background(), vendors.Request{Path: fmt.Sprintf("/items/%d-%d-%d", i, w, j)})
					if err != nil {
						if !errors.Is(err, errNextWindow) {
							t.Errorf("node %d: %v", i, err)
						}
						return
					}
					sent.Add(1)
				}
			})
		}
	}
	wg.Wait()
	if hits.Load() != 30 || sent.Load() != 30 {
		t.Fatalf("the vendor saw %d requests (%d answered) in one window; the cluster's limit is 30", hits.Load(), sent.Load())
	}
}
