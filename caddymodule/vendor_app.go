package caddymodule

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/craftedge/craftedge/vendors"
)

// vendorClientResource is a pooled vendor client: its breaker, token
// bucket and Retry-After window survive a reload that keeps the vendor's
// config unchanged.
type vendorClientResource struct{ *vendors.Client }

func (r vendorClientResource) Destruct() error {
	r.Client.Close()
	return nil
}

// provisionVendors opens the records store and one client per vendor.
func (a *App) provisionVendors() error {
	recs, err := a.openRecords(a.store.DB())
	if err != nil {
		return fmt.Errorf("craftedge: %w", err)
	}
	a.records = recs
	a.vendorClients = make(map[string]*vendors.Client, len(a.Vendors))
	repl := caddy.NewReplacer()
	for _, name := range sortedKeys(a.Vendors) {
		vc := a.Vendors[name]
		if vc == nil {
			return fmt.Errorf("craftedge: vendor %q: empty config", name)
		}
		headers := make(map[string]string, len(vc.Headers))
		for k, v := range vc.Headers {
			headers[k] = repl.ReplaceAll(v, "")
		}
		cfg := vc.vendorsConfig(name, headers)
		if err := cfg.Validate(); err != nil {
			return fmt.Errorf("craftedge: %w", err) // each error names the vendor
		}
		// The key hashes the resolved config (secrets included, never
		// stored in clear): a changed token makes a new client.
		raw, err := json.Marshal(cfg)
		if err != nil {
			return fmt.Errorf("craftedge: vendor %q: %w", name, err)
		}
		sum := sha256.Sum256(raw)
		key := "vendor:" + name + ":" + hex.EncodeToString(sum[:16])
		val, _, err := statePool.LoadOrNew(key, func() (caddy.Destructor, error) {
			c, err := vendors.NewClient(cfg, vendors.ClientOptions{
				Logger:          a.logger.Named("vendors"), // the client adds the vendor field
				Now:             nowFunc,
				OnRequest:       observeVendorRequest,
				OnBreakerChange: observeVendorBreaker,
			})
			if err != nil {
				return nil, err
			}
			return vendorClientResource{c}, nil
		})
		if err != nil {
			return fmt.Errorf("craftedge: %w", err) // NewClient's errors are Validate's
		}
		a.poolKeys = append(a.poolKeys, key)
		a.vendorClients[name] = val.(vendorClientResource).Client
	}
	return a.provisionPush()
}

// vendorClient returns the client of a configured vendor.
func (a *App) vendorClient(name string) (*vendors.Client, *VendorConfig, bool) {
	c, ok := a.vendorClients[name]
	if !ok {
		return nil, nil, false
	}
	return c, a.Vendors[name], true
}

// VendorHealth describes one vendor in GET /craftedge/health.
type VendorHealth struct {
	Name    string `json:"name"`
	Enabled bool   `json:"enabled"`
	// CanaryPercent is the share of live reads sent to the canary base
	// URLs (the `canary` vendor subdirective); 0 when there is no canary.
	CanaryPercent int                    `json:"canary_percent"`
	Breaker       string                 `json:"breaker"`
	Resources     []VendorResourceHealth `json:"resources"`
}

// VendorResourceHealth is the sync progress of one resource.
type VendorResourceHealth struct {
	Name string `json:"name"`
	// LastSync is when the last sync pass completed; zero if none did.
	LastSync time.Time `json:"last_sync,omitzero"`
	// Cursor is the updated time the next delta sync starts from.
	Cursor time.Time `json:"cursor,omitzero"`
	// InProgress reports a pass that started and has not completed.
	InProgress bool `json:"in_progress,omitempty"`
}

// vendorsHealth lists the vendors, sorted by name.
func (a *App) vendorsHealth() []VendorHealth {
	out := []VendorHealth{}
	for _, name := range sortedKeys(a.vendorClients) {
		c := a.vendorClients[name]
		vh := VendorHealth{Name: name, Enabled: c.Enabled(), CanaryPercent: c.Config().Canary.Percent,
			Breaker: c.BreakerState(), Resources: []VendorResourceHealth{}}
		for _, rn := range sortedKeys(a.Vendors[name].Resources) {
			rh := VendorResourceHealth{Name: rn}
			if st, err := a.records.LoadSyncState(name, rn); err == nil {
				rh.LastSync, rh.InProgress = st.LastCompleted, st.InProgress()
			}
			if cur, err := a.records.Cursor(name, rn); err == nil {
				rh.Cursor = cur
			}
			vh.Resources = append(vh.Resources, rh)
		}
		out = append(out, vh)
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// vendorTag is the cache tag of every live read of a vendor (a cache
// handler's vendor route tags each response with it), so one purge drops
// a vendor's cached live reads.
func vendorTag(vendor string) string { return "vendor:" + vendor }
