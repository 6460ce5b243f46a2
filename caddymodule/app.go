// Package caddymodule is the core of craftedge's Caddy glue: the craftedge
// app (global option: memory tier, snapshot store, upstream breakers and
// kill switch, jobs, vendors, webhook authentication, CDN purge forwarding,
// encryption keys, metrics registration), purges, the admin API routes
// (admin.api.craftedge) and the directive order (directives.go). It keeps
// what the webhook and remote purge handlers do with a request
// (webhook_serve.go), which the vendors' webhook blocks share, and the
// stored records and outbox jobs behind the read-model API. Leaf packages
// (caddymodule/cachehandler, caddymodule/records, caddymodule/cdn,
// caddymodule/status, caddymodule/webhookhandler, caddymodule/commands)
// reach the core through leaf_api*.go and webhook_serve.go; the core never
// imports them. The cache tiers and policies live in Caddy-free packages.
package caddymodule

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/craftedge/craftedge/circuit"
	"github.com/craftedge/craftedge/jobs"
	"github.com/craftedge/craftedge/pagecache"
	"github.com/craftedge/craftedge/snapshot"
	"github.com/craftedge/craftedge/vendors"
	"github.com/craftedge/craftedge/webhook/replay"
)

func init() {
	caddy.RegisterModule(App{})
}

// Defaults of the app.
const (
	defaultMemory          = 256 << 20
	defaultSnapshotMaxAge  = 30 * 24 * time.Hour
	defaultStorageFilename = "craftedge.db"
)

// App is the craftedge app: it owns the state shared by every craftedge
// handler of a config (the memory tier, the bbolt snapshot store and the
// upstream circuit breakers) and the global kill switch. The state lives in
// usage pools keyed by its effective config, so `caddy reload` keeps the
// cache warm and the bbolt file lock is held once.
type App struct {
	// Storage is the path of the bbolt file holding snapshots, purge
	// marks and kill-switch overrides. Default: craftedge.db in Caddy's
	// data directory.
	Storage string `json:"storage,omitempty"`

	// StorageCheckMaxSize bounds the size of a bbolt file that is checked
	// page by page (every bucket read, then bbolt's consistency check) when
	// it is opened; larger files only get the truncation check. Either
	// way a damaged file found at open or later is moved aside and
	// craftedge keeps serving without snapshots. Default 256 MiB; -1
	// (Caddyfile: off) never checks page by page.
	StorageCheckMaxSize int64 `json:"storage_check_max_size,omitempty"`

	// Memory bounds the bytes of the memory tier (entries and tag index). Default 256 MiB.
	Memory int64 `json:"memory,omitempty"`

	// WarmStart refills a newly created memory tier from the snapshots in
	// the background at start (most recently stored first, bounded by
	// Memory, purged snapshots skipped), so a restart does not begin with
	// an empty tier. Default (unset) on; false turns it off. A reload
	// keeping the memory tier does not refill it.
	WarmStart *bool `json:"warm_start,omitempty"`

	// PurgeMode is how a purge that does not name its mode treats the
	// memory copies it selects (tags, urls, prefixes, hosts): "soft" (the
	// default) marks them stale, never fresh again, and keeps them, so a
	// request for such a page waits for the upstream at most the handler's
	// stale_after and then gets the pre-purge copy, labelled
	// "detail=stale-after-purged", while the upstream call refreshes it;
	// "hard" removes them, so such a request waits for the upstream (up to
	// its timeout). Either way snapshots are marked stale, never deleted,
	// and purging all is always hard. Craft's saves (Cache-Purge-Tag,
	// craftedge_purge), vendor syncs and webhooks use it; a purge request
	// may name its own mode. See PurgeRequest.Mode.
	PurgeMode string `json:"purge_mode,omitempty"`

	// SnapshotOnly is the global kill switch: when true, no handler calls
	// its upstream for cacheable requests; responses come from the memory
	// tier, snapshots or the fallback.
	SnapshotOnly bool `json:"snapshot_only,omitempty"`

	// SnapshotMaxSize bounds the bytes of stored snapshots; the oldest are
	// evicted first. Zero means unbounded.
	SnapshotMaxSize int64 `json:"snapshot_max_size,omitempty"`

	// SnapshotMaxAge evicts snapshots older than this. Default 30 days.
	SnapshotMaxAge caddy.Duration `json:"snapshot_max_age,omitempty"`

	// Jobs configures the durable job queue (syncs, refetches, outbox)
	// kept in the same bbolt file.
	Jobs *JobsConfig `json:"jobs,omitempty"`

	// Vendors are the external vendor APIs, by name, whose records are
	// synced into the bbolt file and served by craftedge_records.
	Vendors map[string]*VendorConfig `json:"vendors,omitempty"`

	// CDN is the downstream CDN purges are forwarded to (cdn.purge jobs).
	CDN *CDNConfig `json:"cdn,omitempty"`

	// EncryptionKeys seal the vendor fields marked sensitive at rest
	// (see EncryptionKey). Required when a resource has sensitive fields.
	EncryptionKeys []EncryptionKey `json:"encryption_keys,omitempty"`

	// Media configures the store of the files named by the resources'
	// media fields (see MediaConfig); defaults apply when a resource has
	// media fields and Media is nil.
	Media *MediaConfig `json:"media,omitempty"`

	// Cluster joins this node to a craftedge cluster on NATS JetStream
	// (see ClusterConfig); nil runs a single node and connects nothing.
	Cluster *ClusterConfig `json:"cluster,omitempty"`

	ctx    caddy.Context
	logger *zap.Logger

	store  *snapshot.Store
	memory *pagecache.Cache
	// memoryCreated is true when this config created the memory tier
	// (not kept from the previous config): the warm start refills it.
	memoryCreated bool
	jobs          *jobs.Queue
	stopJobs      func()
	poolKeys      []string
	// validateDir holds the throw-away store of a validation (see
	// validatingOnly); removed at Cleanup.
	validateDir string

	vendorClients       map[string]*vendors.Client
	records             *vendors.Records
	sealing             *sealing
	stopVendorScheduler func()

	// replay remembers accepted webhook deliveries; webhookReceivers are
	// the vendors' webhook verifiers (resolved secrets), by vendor name.
	replay            *replay.Store
	webhookReceivers  map[string]*signedReceiver
	stopReplaySweeper func()

	// media is the provisioned media store; nil when no resource has
	// media fields.
	media *mediaState
	push  *pushState // the resources' push targets (vendor_push.go)

	// cdn is the provisioned CDN (its provider module, the client); nil
	// when none.
	cdn *cdnTarget

	upstreamsMu *sync.Mutex
	upstreams   map[string]*upstreamState

	// counters are process-wide, so they survive reloads.
	counters *counters

	// overrides is the kill-switch override state (upstream "" = all),
	// mirrored from the store so the request path reads it without I/O.
	overrides *atomic.Pointer[map[string]bool]

	// cluster is this node's membership (cluster.go), nil without a
	// cluster block; clusterKey its statePool key.
	cluster            *clusterNode
	clusterKey         string
	stopClusterSampler func()
	// clusterData is the data-sharing parts this app runs on its node
	// (cluster_data.go); clusterLive what the request paths read of them.
	clusterData *clusterData
	clusterLive *clusterLive
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "craftedge",
		New: func() caddy.Module { return new(App) },
	}
}

// statePool holds the state that must survive config reloads: snapshot
// stores keyed by file path, memory tiers keyed by their bound, breakers
// keyed by upstream name and thresholds.
var statePool = caddy.NewUsagePool()

// currentApp is the running app, for admin routes (which are provisioned
// before apps) to resolve per request.
var currentApp atomic.Pointer[App]

type storeResource struct{ *snapshot.Store }

func (r storeResource) Destruct() error { return r.Store.Close() }

type memoryResource struct{ *pagecache.Cache }

func (r memoryResource) Destruct() error { return r.Cache.Close() }

// Provision opens (or reuses) the shared state.
func (a *App) Provision(ctx caddy.Context) error {
	a.ctx = ctx
	a.logger = ctx.Logger()
	a.upstreams = make(map[string]*upstreamState)
	a.upstreamsMu = new(sync.Mutex)
	a.overrides = new(atomic.Pointer[map[string]bool])
	a.clusterLive = new(clusterLive)
	a.counters = &processCounters
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("craftedge: registering metrics: %w", err)
	}
	if err := registerWebhookMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("craftedge: registering webhook metrics: %w", err)
	}
	if a.Memory == 0 {
		a.Memory = defaultMemory
	}
	if a.Memory < 1<<20 {
		return fmt.Errorf("craftedge: memory must be at least 1MiB, got %d bytes", a.Memory)
	}
	if err := checkMemoryBound(a.Memory); err != nil {
		return fmt.Errorf("craftedge: %w", err)
	}
	if a.SnapshotMaxAge == 0 {
		a.SnapshotMaxAge = caddy.Duration(defaultSnapshotMaxAge)
	}
	switch a.PurgeMode {
	case "":
		a.PurgeMode = purgeModeSoft
	case purgeModeSoft, purgeModeHard:
	default:
		return fmt.Errorf("craftedge: purge_mode must be soft or hard, got %q", a.PurgeMode)
	}
	if a.Storage == "" {
		a.Storage = filepath.Join(caddy.AppDataDir(), defaultStorageFilename)
	}
	path, err := filepath.Abs(a.Storage)
	if err != nil {
		return fmt.Errorf("craftedge: storage path %q: %w", a.Storage, err)
	}
	a.Storage = path

	if a.StorageCheckMaxSize == 0 {
		a.StorageCheckMaxSize = defaultStorageCheckMaxSize
	}
	storePath := path
	if validatingOnly {
		// The live file may be held by a running instance (bbolt's lock):
		// provision the rest of the config against an empty store in a
		// temp dir, removed at Cleanup, and never start anything.
		dir, err := os.MkdirTemp("", "craftedge-validate-")
		if err != nil {
			return fmt.Errorf("craftedge: validating: temp storage: %w", err)
		}
		a.validateDir = dir
		storePath = filepath.Join(dir, defaultStorageFilename)
		a.logger.Info("validating only: storage not opened", zap.String("storage", path))
	}
	store, storeKey, err := a.openStore(storePath)
	if err != nil {
		return fmt.Errorf("craftedge: storage: %w", err)
	}
	a.poolKeys = append(a.poolKeys, storeKey)
	a.store = store
	// The store is shared across reloads: apply this config's bounds.
	if err := a.store.SetLimits(a.SnapshotMaxSize, time.Duration(a.SnapshotMaxAge)); err != nil {
		return fmt.Errorf("craftedge: snapshot bounds: %w", err)
	}

	memKey := fmt.Sprintf("memory:%d", a.Memory)
	val, loaded, err := statePool.LoadOrNew(memKey, func() (caddy.Destructor, error) {
		c, err := pagecache.New(pagecache.Options{
			MaxBytes:      a.Memory,
			MaxEntryBytes: int(min(a.Memory/16, 64<<20)),
			// Soft memory limit from the bound unless GOMEMLIMIT is set.
			SetMemoryLimit: !validatingOnly,
		})
		if err != nil {
			return nil, err
		}
		return memoryResource{c}, nil
	})
	if err != nil {
		return fmt.Errorf("craftedge: memory tier: %w", err)
	}
	a.poolKeys = append(a.poolKeys, memKey)
	a.memory = val.(memoryResource).Cache
	a.memoryCreated = !loaded
	a.loadOverrides()
	if err := a.provisionVendors(); err != nil {
		return err
	}
	if err := a.provisionMedia(); err != nil {
		return err
	}
	if err := a.provisionWebhooks(); err != nil {
		return err
	}
	if err := a.provisionCDN(); err != nil {
		return err
	}
	if err := a.provisionJobs(); err != nil {
		return err
	}
	if err := a.provisionCluster(); err != nil {
		return err
	}
	a.initSeries()
	return nil
}

// loadOverrides refreshes the in-memory copy of the kill-switch overrides.
func (a *App) loadOverrides() {
	o := a.store.SnapshotOnlyOverrides()
	a.overrides.Store(&o)
}

// setOverride stores a kill-switch override durably, then applies it.
// checkOverrideUpstream validates the upstream of a kill-switch override
// request: "" (all upstreams) or a configured upstream. An override stored
// for an upstream no longer configured may still be cleared (enabled
// false). The error names the problem, quoting at most 64 bytes of the name.
func (a *App) checkOverrideUpstream(upstream string, enabled bool) error {
	if upstream == "" || slices.ContainsFunc(a.upstreamList(), func(u *upstreamState) bool { return u.name == upstream }) {
		return nil
	}
	if o := a.overrides.Load(); !enabled && o != nil {
		if _, stored := (*o)[upstream]; stored {
			return nil
		}
	}
	name := upstream
	if len(name) > 64 {
		name = strings.ToValidUTF8(name[:64], "") + "…"
	}
	names := []string{}
	for _, u := range a.upstreamList() {
		names = append(names, u.name)
	}
	return fmt.Errorf("unknown upstream %q (%d bytes); configured upstreams: %s", name, len(upstream), strings.Join(names, ", "))
}

func (a *App) setOverride(upstream string, enabled bool) error {
	if err := a.store.SetSnapshotOnlyOverride(upstream, enabled); err != nil {
		return err
	}
	a.loadOverrides()
	a.shareOverride(upstream, enabled) // with every node of a cluster
	return nil
}

// Start makes this app the one the admin routes see.
func (a *App) Start() error {
	a.startCluster()
	if err := a.startClusterData(); err != nil {
		a.stopCluster()
		return err
	}
	a.startJobs()
	a.startVendorScheduler()
	a.startReplaySweeper()
	a.startMediaMaintenance()
	currentApp.Store(a)
	a.startWarmStart()
	a.logger.Info("craftedge started",
		zap.String("storage", a.Storage),
		zap.Int64("memory_bytes", a.Memory),
		zap.Bool("snapshot_only", a.SnapshotOnly))
	return nil
}

// Stop flushes pending snapshot writes so a stop loses nothing.
func (a *App) Stop() error {
	currentApp.CompareAndSwap(a, nil)
	if a.stopVendorScheduler != nil {
		a.stopVendorScheduler()
	}
	if a.stopReplaySweeper != nil {
		a.stopReplaySweeper()
	}
	if a.media != nil && a.media.stopMaintenance != nil {
		a.media.stopMaintenance()
	}
	a.stopClusterData() // before the local queue and the node
	if a.stopJobs != nil {
		a.stopJobs()
	}
	a.stopCluster()
	a.stopServedScores()
	if a.store != nil {
		if err := a.store.Flush(); err != nil {
			a.logger.Error("flushing snapshots", zap.Error(err))
		}
	}
	return nil
}

// Cleanup releases this config's hold on the shared state.
func (a *App) Cleanup() error {
	a.cleanupCluster()
	for _, k := range a.poolKeys {
		if _, err := statePool.Delete(k); err != nil {
			a.logger.Error("releasing craftedge state", zap.String("key", k), zap.Error(err))
		}
	}
	if a.validateDir != "" {
		if err := os.RemoveAll(a.validateDir); err != nil {
			a.logger.Error("removing validation storage", zap.String("dir", a.validateDir), zap.Error(err))
		}
	}
	return nil
}

// validatingOnly is true in a process that only validates a config
// (`caddy validate`, `caddy adapt --validate`): there the app is
// provisioned, so every setting is checked, but never started, and it must
// not need the live storage, which a running instance holds locked. Caddy
// gives modules no signal for this (caddy.Validate provisions exactly as a
// load does, and a first load has no running config either), so it is read
// from the command line Caddy's cobra commands parse.
var validatingOnly = isValidateCommand(os.Args)

// isValidateCommand reports whether args (os.Args) run Caddy's validate
// command or adapt with --validate.
func isValidateCommand(args []string) bool {
	if len(args) < 2 {
		return false
	}
	switch args[1] {
	case "validate":
		return true
	case "adapt":
		for _, a := range args[2:] {
			if a == "--" {
				break
			}
			if a == "--validate" || a == "-validate" || a == "--validate=true" || a == "-validate=true" {
				return true
			}
		}
	}
	return false
}

// upstream returns (creating on first use) the state of a named upstream
// for this config; handlers naming the same upstream share it.
func (a *App) upstream(name string, cfg circuit.Config) (*upstreamState, error) {
	a.upstreamsMu.Lock()
	defer a.upstreamsMu.Unlock()
	if u, ok := a.upstreams[name]; ok {
		if u.config != cfg {
			return nil, fmt.Errorf("upstream %q is configured with two different breakers", name)
		}
		return u, nil
	}
	key := fmt.Sprintf("breaker:%s:%t:%d:%d:%d:%d", name, cfg.Disabled, cfg.Failures, cfg.MinPaths, cfg.Successes, cfg.Cooldown)
	val, _, err := statePool.LoadOrNew(key, func() (caddy.Destructor, error) {
		return newUpstreamBreaker(name, cfg, a.logger.Named("breaker")), nil
	})
	if err != nil {
		return nil, err
	}
	a.poolKeys = append(a.poolKeys, key)
	initUpstreamSeries(name)
	u := &upstreamState{name: name, config: cfg, breaker: val.(upstreamBreaker)}
	a.upstreams[name] = u
	return u, nil
}

// upstreamList returns the configured upstreams, sorted by name.
func (a *App) upstreamList() []*upstreamState {
	a.upstreamsMu.Lock()
	defer a.upstreamsMu.Unlock()
	out := make([]*upstreamState, 0, len(a.upstreams))
	for _, u := range a.upstreams {
		out = append(out, u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// snapshotOnly reports whether the kill switch is on for an upstream:
// globally in config, for the handler (handlerOn), or by an admin override
// (global or for this upstream).
func (a *App) snapshotOnly(upstream string, handlerOn bool) bool {
	if a.SnapshotOnly || handlerOn {
		return true
	}
	return a.overrideOn(upstream)
}

func (a *App) overrideOn(upstream string) bool {
	o := a.overrides.Load()
	if o == nil {
		return false
	}
	return (*o)[""] || (*o)[upstream]
}

// counters count what the handlers did, for health and metrics.
type counters struct {
	bypassed, staleServed, snapshotServed, fallbackServed, purges atomic.Uint64
}

var processCounters counters

// Interface guards.
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
