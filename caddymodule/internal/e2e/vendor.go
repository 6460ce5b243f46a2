package e2e

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/craftedge/craftedge/vendorsim"
)

// VendorConfig is a test config of a gateway in front of one vendor: the
// vendor simulator's commerce API as vendor "shop" with its resource
// "product" (synced, written through the outbox), fast job backoffs.
type VendorConfig struct {
	// Storage is the bbolt file.
	Storage string
	// BaseURL is the vendor's base_url (the simulator's URL).
	BaseURL string
	// Vendor holds extra subdirectives of the vendor block.
	Vendor string
	// Resource holds extra subdirectives of the product resource.
	Resource string
	// Public marks the product resource public (anyone may read it).
	Public bool
	// Site is the body of the site block.
	Site string
	// Global holds extra subdirectives of the craftedge global option
	// (e.g. a media block).
	Global string
}

// VendorCaddyfile is the Caddyfile of c.
func VendorCaddyfile(c VendorConfig) string {
	public := ""
	if c.Public {
		public = "public"
	}
	return fmt.Sprintf(`{
%s	grace_period 1ns
	skip_install_trust
	craftedge {
		storage %s
		memory 16MiB
		jobs {
			kind vendor.sync {
				backoff 10ms 50ms
			}
			kind outbox {
				backoff 10ms 50ms
			}
			kind media.fetch {
				backoff 10ms 50ms
				max_attempts 1000
			}
			kind vendor.push {
				backoff 10ms 50ms
				max_attempts 1000
			}
		}
		%s
		vendor shop {
			base_url %s
			version path v2
			header Authorization "Bearer {env.SHOP_TOKEN}"
			timeout 2s
			rate 1000/s burst 1000
			retries 1
			hedge 0s
			breaker {
				failures 50
				successes 1
				cooldown 1s
			}
			%s
			resource product {
				get /products/{id}
				list "/products?updated_since={since}&page={page}&per_page={per_page}" items data has_more has_more per_page 10
				upsert PUT /products/{id}
				id id
				version version
				updated updated_at
				field title title.en required
				field price price.amount required
				tags shop:product:{id}
				%s
				%s
			}
		}
	}
}
%s {
	%s
}
`, GlobalPorts(), c.Storage, c.Global, c.BaseURL, c.Vendor, public, c.Resource, SiteAddr, c.Site)
}

// VendorLiveSite is a site body routing /shop-api/* to the shop vendor
// through the craftedge handler (live read-through, handlerExtra added to
// its block) and the rest to the read model (craftedge_records, open to
// anonymous writes).
func VendorLiveSite(handlerExtra string) string {
	return `handle_path /shop-api/* {
		craftedge {
			vendor shop
			ttl 1m
			stale 1h
			timeout 2s
			` + handlerExtra + `
		}
	}
	handle {
		craftedge_records {
			allow_anonymous_writes
		}
	}`
}

// StartVendorSim starts the vendor simulator with that many products on
// 127.0.0.1, closed when the test ends, and sets SHOP_TOKEN (the
// credential of VendorCaddyfile's vendor) to its token. It returns the
// simulator and its base URL.
func StartVendorSim(t *testing.T, products int) (*vendorsim.Sim, string) {
	t.Helper()
	t.Setenv("SHOP_TOKEN", vendorsim.DefaultCommerceToken)
	sim := vendorsim.New(vendorsim.Options{Products: products, Seed: 1})
	t.Cleanup(func() { _ = sim.Close() })
	srv, err := sim.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return sim, srv.URL()
}

// StartVendorConfig is StartConfig for a vendor config (no origin of the
// test), with a client that reads bodies as a browser would: decompressed.
func StartVendorConfig(t *testing.T, caddyfile, storage string) *Gateway {
	t.Helper()
	g := StartConfig(t, nil, caddyfile, storage)
	g.Client = &http.Client{Timeout: 10 * time.Second}
	return g
}

// VendorEnv is a gateway in front of the vendor simulator.
type VendorEnv struct {
	*Gateway
	// Sim is the simulator the vendor block points at.
	Sim *vendorsim.Sim
	// SimURL is the base URL the vendor block points at.
	SimURL string
}

// StartVendorEnv starts craftedge with caddyfile (its bbolt file at
// storage) in front of sim, served at simURL.
func StartVendorEnv(t *testing.T, sim *vendorsim.Sim, simURL, caddyfile, storage string) *VendorEnv {
	t.Helper()
	return &VendorEnv{Gateway: StartVendorConfig(t, caddyfile, storage), Sim: sim, SimURL: simURL}
}
