package e2e

import "fmt"

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
		}
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
`, GlobalPorts(), c.Storage, c.BaseURL, c.Vendor, public, c.Resource, SiteAddr, c.Site)
}
