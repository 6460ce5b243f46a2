package webhookhandler

import (
	"bytes"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
	"github.com/craftedge/craftedge/vendorsim"
	"github.com/craftedge/craftedge/webhook"
)

// BenchmarkWebhookAck measures a signed webhook's acknowledgement through
// a real Caddy on loopback: POST /webhooks/shop, verified (Standard
// Webhooks), deduplicated against the bbolt replay memory, its refetch
// enqueued durably (a bbolt commit), answered 202. The refetches run in
// the background against the vendor simulator meanwhile, as in production.
// It reports the acknowledgement's p50 and p99 besides ns/op:
//
//	go test -run '^$' -bench WebhookAck -benchtime 2000x ./caddymodule
func BenchmarkWebhookAck(b *testing.B) {
	b.Setenv("SHOP_TOKEN", vendorsim.DefaultCommerceToken)
	b.Setenv("SHOP_WEBHOOK_SECRET", hookSecretNew)
	b.Setenv("SHOP_WEBHOOK_SECRET_OLD", hookSecretOld)
	b.Setenv("CRAFT_PURGE_SECRET", purgeSecret)
	sim := vendorsim.New(vendorsim.Options{Products: 50, Seed: 1})
	b.Cleanup(func() { _ = sim.Close() })
	srv, err := sim.Start("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	tester := caddytest.NewTester(b)
	cfg := webhookCaddyfile(srv.URL(), webhookOptions{storage: filepath.Join(b.TempDir(), "craftedge.db")})
	// Quiet logs: the benchmark's result line must stay parseable.
	cfg = strings.Replace(cfg, "\tgrace_period 1ns\n", "\tgrace_period 1ns\n\tlog {\n\t\toutput discard\n\t}\n", 1)
	tester.InitServer(cfg, "caddyfile")
	b.Cleanup(func() { e2e.StopGateway(b) })
	client := &http.Client{Timeout: 10 * time.Second}
	signer := webhook.Config{Scheme: webhook.SchemeStandard, Secrets: []string{hookSecretNew}}

	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		// The vendor changes a product, then announces its new version:
		// no replay, no coalescing; the refetch finds that version.
		id := strconv.Itoa(i%50 + 1)
		version, err := sim.Update(vendorsim.KindProduct, id, func(f map[string]any) { f["stock"] = i })
		if err != nil {
			b.Fatal(err)
		}
		body := fmt.Appendf(nil, `{"type":"product.updated","id":"%s","version":%d}`, id, version)
		req := &webhook.Request{Header: http.Header{}, Body: body}
		if err := signer.Sign(req, fmt.Sprintf("msg_bench_%d", i), time.Now()); err != nil {
			b.Fatal(err)
		}
		hreq, _ := http.NewRequest(http.MethodPost, e2e.SiteAddr+hookURLPath, bytes.NewReader(body))
		hreq.Header = req.Header
		hreq.Header.Set("Content-Type", "application/json")
		start := time.Now()
		resp, err := client.Do(hreq)
		if err != nil {
			b.Fatal(err)
		}
		_ = resp.Body.Close()
		lat = append(lat, time.Since(start))
		if resp.StatusCode != http.StatusAccepted {
			b.Fatalf("delivery %d: status %d", i, resp.StatusCode)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
