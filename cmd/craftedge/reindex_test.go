package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/craftedge/craftedge/vendorsim"
)

// reindexCaddyfile is backfillCaddyfile with the product resource pushed
// to the simulator's search index (vendor "search").
func reindexCaddyfile(admin, storage, vendorURL, indexURL, site string) string {
	cfg := backfillCaddyfile(admin, storage, vendorURL, site)
	cfg = strings.Replace(cfg, "\t\t\t\tpublic\n", "\t\t\t\tpublic\n\t\t\t\tpush search meilisearch products\n", 1)
	return strings.Replace(cfg, "\t\tvendor shop {", fmt.Sprintf(`		vendor search {
			base_url %s
			header Authorization "Bearer %s"
			rate 1000/s
		}
		vendor shop {`, indexURL, vendorsim.DefaultIndexToken), 1)
}

func startIndexSim(t *testing.T, products int) (*vendorsim.Sim, string, string) {
	t.Helper()
	sim := vendorsim.New(vendorsim.Options{Products: products, Seed: 1})
	t.Cleanup(func() { _ = sim.Close() })
	src, err := sim.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	idx, err := sim.NewEndpoint().Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return sim, src.URL(), idx.URL()
}

// TestReindexLocal: with no instance running, the command pushes the
// stored records itself, without calling the source vendor.
func TestReindexLocal(t *testing.T) {
	sim, srcURL, idxURL := startIndexSim(t, 23)
	cfg := reindexCaddyfile(freeAddr(t), filepath.Join(t.TempDir(), "craftedge.db"), srcURL, idxURL, freeAddr(t))
	if run := startBackfill(t, cfg, "shop", "product"); run.wait(t) != 0 {
		t.Fatalf("backfill failed:\n%s", run.out.String())
	}
	if n := sim.IndexDocuments("products"); n != 0 {
		t.Fatalf("a local backfill pushed %d documents (it has no job queue)", n)
	}
	sim.Reset()
	run := startCommand(t, cfg, "reindex", "shop", "product", "search")
	if code := run.wait(t); code != 0 {
		t.Fatalf("reindex exited %d:\n%s", code, run.out.String())
	}
	out := run.out.String()
	if !strings.Contains(out, "pushing shop/product to search from the stored records here") ||
		!strings.Contains(out, "rebuild of shop/product to search done: 23 records pushed, 0 of them as deletes") {
		t.Fatalf("output:\n%s", out)
	}
	if n := sim.IndexDocuments("products"); n != 23 {
		t.Fatalf("%d documents indexed, want 23", n)
	}
	if n := sim.Requests().Total; n != 0 {
		t.Errorf("the rebuild made %d requests to the source vendor", n)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"shop", "product", "nosuch"}, `has no push target \"nosuch\"`},
		{[]string{"shop", "nosuch", "search"}, `has no resource`},
	} {
		run := startCommand(t, cfg, "reindex", tc.args...)
		if code := run.wait(t); code == 0 || !strings.Contains(run.out.String(), tc.want) {
			t.Fatalf("reindex %v: exit %d, output:\n%s\nwant %q", tc.args, code, run.out.String(), tc.want)
		}
	}
}

// TestReindexThroughRunningInstance: the instance holds the bbolt file and
// runs the rebuild as a job; the command shows its progress.
func TestReindexThroughRunningInstance(t *testing.T) {
	t.Setenv("SHOP_TOKEN", vendorsim.DefaultCommerceToken)
	sim, srcURL, idxURL := startIndexSim(t, 31)
	admin := freeAddr(t)
	cfg := reindexCaddyfile(admin, filepath.Join(t.TempDir(), "craftedge.db"), srcURL, idxURL, freeAddr(t))
	cfgJSON, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := caddy.Load(cfgJSON, true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	if run := startBackfill(t, cfg, "shop", "product"); run.wait(t) != 0 {
		t.Fatalf("backfill failed:\n%s", run.out.String())
	}
	// The instance's sync pushed every record.
	waitFor(t, "the pushes", func() bool { return sim.IndexDocuments("products") == 31 })
	sim.ClearIndex()
	run := startCommand(t, cfg, "reindex", "shop", "product", "search")
	if code := run.wait(t); code != 0 {
		t.Fatalf("reindex exited %d:\n%s", code, run.out.String())
	}
	out := run.out.String()
	if !strings.Contains(out, "runs in the instance at "+admin+" as job") ||
		!strings.Contains(out, "done: 31 records pushed, 0 of them as deletes") {
		t.Fatalf("output:\n%s", out)
	}
	if n := sim.IndexDocuments("products"); n != 31 {
		t.Fatalf("%d documents after the rebuild, want 31", n)
	}
	run = startCommand(t, cfg, "reindex", "shop", "product", "nosuch")
	if code := run.wait(t); code == 0 || !strings.Contains(run.out.String(), `no push target \\\"nosuch\\\"`) {
		t.Fatalf("reindex of an unknown target: exit %d:\n%s", code, run.out.String())
	}
}
