package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/craftedge/craftedge/demoorigin"
	"github.com/craftedge/craftedge/vendorsim"
)

// Phase is one window of the run.
type Phase struct {
	Name string
	// Fault is the fault's number 1..8, 0 for a healthy window, -1 for
	// the warm-up.
	Fault      int
	Start, End time.Time
	// CraftUp reports whether Craft could answer saves during the window.
	CraftUp bool
	Notes   []string
}

// Restart is fault 8's SIGKILL and restart.
type Restart struct {
	KilledAt, ReadyAt time.Time
	BurstAcked        int
	PendingAtKill     int // outbox jobs ready or running just before the kill
	SnapshotsBefore   int64
	SnapshotsAfter    int64
	RecordsNotServed  []string // right after the restart
	Err               error
	RefetchBeforeKill int
	LoadAvg           string // /proc/loadavg's 1, 5 and 15 min averages just before the kill
}

// Result is everything the report and the plot need.
type Result struct {
	Cfg      config
	Start    time.Time
	Phases   []Phase
	Samples  []Sample
	Scrapes  []ScrapePoint
	Skipped  map[Class]int
	Changes  int64
	Webhooks struct{ Sent, Dropped, Failed int }
	Heal7    *RecordsCheck
	Records8 *RecordsCheck
	Outbox   OutboxCheck
	Restart  Restart
}

type runner struct {
	cfg  config
	g    *gateway
	org  *origin
	vs   *vendorSim
	load *loadGen
}

// fault is one injected failure.
type fault struct {
	name    string
	craftUp bool
	begin   func(ctx context.Context, r *runner, p *Phase)
	end     func(r *runner)
}

func chaosSet(r *runner, cfg vendorsim.ChaosConfig) {
	if err := r.vs.sim.Chaos().Set(cfg); err != nil {
		panic(err) // a literal config of this file
	}
}

var faults = []fault{
	{name: "Craft down (connection refused)",
		begin: func(_ context.Context, r *runner, _ *Phase) { r.org.down() },
		end: func(r *runner) {
			if err := r.org.up(); err != nil {
				log.Print(err)
			}
		}},
	{name: "Craft slow (10 s responses)", craftUp: true,
		begin: func(_ context.Context, r *runner, _ *Phase) { r.org.site.SetMode(demoorigin.ModeSlow) },
		end:   func(r *runner) { r.org.site.SetMode(demoorigin.ModeOK) }},
	{name: "Craft 5xx storm",
		begin: func(_ context.Context, r *runner, _ *Phase) { r.org.site.SetMode(demoorigin.ModeError) },
		end:   func(r *runner) { r.org.site.SetMode(demoorigin.ModeOK) }},
	{name: "vendor 5xx storm", craftUp: true,
		begin: func(_ context.Context, r *runner, _ *Phase) { chaosSet(r, vendorsim.ChaosConfig{ErrorRate: 1}) },
		end:   func(r *runner) { r.vs.sim.Chaos().Clear() }},
	{name: "vendor throttling (429, Retry-After 3s)", craftUp: true,
		begin: func(_ context.Context, r *runner, _ *Phase) {
			chaosSet(r, vendorsim.ChaosConfig{ThrottleRate: 1, RetryAfter: 3 * time.Second})
		},
		end: func(r *runner) { r.vs.sim.Chaos().Clear() }},
	{name: "vendor 3 s latency", craftUp: true,
		begin: func(_ context.Context, r *runner, _ *Phase) {
			chaosSet(r, vendorsim.ChaosConfig{Latency: 3 * time.Second})
		},
		end: func(r *runner) { r.vs.sim.Chaos().Clear() }},
	{name: "webhooks dropped", craftUp: true,
		begin: func(_ context.Context, r *runner, _ *Phase) { _ = r.vs.sim.SetWebhookDropRate(1) },
		end:   func(r *runner) { _ = r.vs.sim.SetWebhookDropRate(0) }},
	{name: "craftedge SIGKILL + restart", craftUp: true,
		begin: func(context.Context, *runner, *Phase) {}, // see run: killAndRestart
		end:   func(*runner) {}},
}

func (r *runner) run(ctx context.Context) (*Result, error) {
	res := &Result{Cfg: r.cfg}
	urls := pageURLs(r.cfg.pages)
	r.load = newLoadGen(r.g.siteURL(), urls, r.cfg.products, r.vs.sim, r.cfg.rates)
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	sc := &scraper{g: r.g}
	var wg sync.WaitGroup
	res.Start = time.Now()
	wg.Go(func() { r.load.run(loadCtx) })
	wg.Go(func() { sc.run(loadCtx, time.Second) })

	window := func(name string, fault int, craftUp bool, d time.Duration, during func(p *Phase)) *Phase {
		res.Phases = append(res.Phases, Phase{Name: name, Fault: fault, Start: time.Now(), CraftUp: craftUp})
		p := &res.Phases[len(res.Phases)-1]
		log.Printf("window: %s (%s)", name, d)
		end := p.Start.Add(d)
		if during != nil {
			during(p)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Until(end)):
		}
		p.End = time.Now()
		return p
	}
	// res.Phases is appended to: pointers are only used until the next
	// window starts, and the slice is sized up front so they stay valid.
	res.Phases = make([]Phase, 0, 3+2*len(faults))

	heal := func(dst **RecordsCheck, label string) func(*Phase) {
		return func(*Phase) {
			c := checkRecords(ctx, r.g, r.load, r.vs.sim, r.cfg.products, 3*r.cfg.syncEvery+20*time.Second)
			*dst = &c
			log.Printf("%s: %d records, %d differed at first, %d still wrong, all matched after %s",
				label, c.Compared, c.FirstMismatched, len(c.Mismatched), c.HealedAfter.Round(time.Millisecond))
		}
	}
	window("warm-up", -1, true, r.cfg.warmup, nil)
	for i, f := range faults {
		if ctx.Err() != nil {
			break
		}
		var during func(*Phase)
		if i == 7 {
			// The healthy window after fault 7 runs while the delta sync
			// heals the records the dropped webhooks left stale.
			// The check pauses outbox writes and vendor changes (a few
			// seconds, until every record matches) and reads every
			// record each second: another load than the SIGKILL
			// window's. So one more healthy window follows, under the
			// full mix: the one fault 8 is compared with (report.go,
			// warmRestart).
			window("healthy", 0, true, r.cfg.healthy, heal(&res.Heal7, "fault 7 check"))
			during = func(*Phase) {
				// The same profile as CHAOS_RESTART_PROFILE, of the
				// healthy window it is compared with.
				if path := os.Getenv("CHAOS_HEALTHY_PROFILE"); path != "" {
					go restartProfile(ctx, r.g.adminURL(), path)
				}
			}
		}
		window("healthy", 0, true, r.cfg.healthy, during)
		n := i + 1
		var restartDone chan struct{}
		window(fmt.Sprintf("%d. %s", n, f.name), n, f.craftUp, r.cfg.fault, func(p *Phase) {
			if n == 8 {
				restartDone = make(chan struct{})
				go func() {
					defer close(restartDone)
					r.killAndRestart(ctx, &res.Restart)
				}()
				return
			}
			f.begin(ctx, r, p)
		})
		f.end(r)
		if restartDone != nil {
			<-restartDone
		}
	}
	window("healthy", 0, true, r.cfg.healthy, heal(&res.Records8, "after fault 8"))
	c := *res.Records8
	stopLoad()
	wg.Wait()
	// Every acknowledged write must have reached the simulator once: wait
	// for the outbox to drain, then read its write log.
	waitDrained(ctx, r.g, time.Now().Add(60*time.Second))
	var acked []ackedWrite
	res.Samples, acked, res.Skipped, _ = r.load.snapshot()
	res.Outbox = checkOutbox(r.vs.sim, acked, r.load.writeSeq.Load())
	res.Scrapes = sc.points()
	res.Changes = r.load.changes.Load()
	for _, d := range r.vs.sim.Webhooks() {
		switch {
		case d.Dropped:
			res.Webhooks.Dropped++
		case d.Err != nil || d.Status/100 != 2:
			res.Webhooks.Failed++
		default:
			res.Webhooks.Sent++
		}
	}
	log.Printf("outbox: %d acknowledged, %d lost, %d duplicated; records: %d wrong after the run",
		res.Outbox.Acked, len(res.Outbox.Lost), len(res.Outbox.Duplicated), len(c.Mismatched))
	return res, ctx.Err()
}

// killAndRestart is fault 8: a third into the window, a burst of outbox
// writes is acknowledged, craftedge is SIGKILLed and started again on the
// same config and bbolt file.
func (r *runner) killAndRestart(ctx context.Context, out *Restart) {
	select {
	case <-ctx.Done():
		return
	case <-time.After(r.cfg.fault / 3):
	}
	out.BurstAcked = r.load.burstWrites(ctx, 30)
	if h, err := r.g.health(ctx); err == nil {
		out.PendingAtKill = h.pending("outbox")
		out.RefetchBeforeKill = h.pending("vendor.refetch")
		out.SnapshotsBefore = h.Snapshots.Count
	}
	out.LoadAvg = loadAvg()
	out.KilledAt = time.Now()
	r.g.kill()
	log.Printf("craftedge killed (SIGKILL) with %d outbox jobs pending; restarting", out.PendingAtKill)
	if err := r.g.start(ctx); err != nil {
		out.Err = err
		log.Print(err)
		return
	}
	out.ReadyAt = time.Now()
	if p := os.Getenv("CHAOS_RESTART_PROFILE"); p != "" {
		go restartProfile(ctx, r.g.adminURL(), p)
	}
	if h, err := r.g.health(ctx); err == nil {
		out.SnapshotsAfter = h.Snapshots.Count
	}
	// Every record is still served right after the restart (whatever its
	// version: changes made meanwhile are healed later).
	for i := 1; i <= r.cfg.products; i++ {
		id := fmt.Sprint(i)
		if _, status := fetchRecord(ctx, r.g.siteURL(), id); status != 200 {
			out.RecordsNotServed = append(out.RecordsNotServed, fmt.Sprintf("%s (%d)", id, status))
		}
	}
	log.Printf("craftedge back after %s; %d records not served", out.ReadyAt.Sub(out.KilledAt).Round(time.Millisecond), len(out.RecordsNotServed))
}

// loadAvg reads the machine's load averages (1, 5, 15 min) from
// /proc/loadavg, "" where there is none.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// restartProfile writes a CPU profile of craftedge's first 2 s (or
// CHAOS_RESTART_PROFILE_SECONDS) after the
// restart (Caddy's admin endpoint, /debug/pprof/profile) to path: what
// the restart costs, the warm start's share included
// (CHAOS_RESTART_PROFILE=path). CHAOS_HEALTHY_PROFILE=path writes the
// same profile from the start of the healthy window before fault 8, to
// compare with (go tool pprof -diff_base).
func restartProfile(ctx context.Context, adminURL, path string) {
	secs := "2"
	if v := os.Getenv("CHAOS_RESTART_PROFILE_SECONDS"); v != "" {
		secs = v
	}
	// The allocations so far (since the process started), before and
	// after the CPU profile: their difference is what the profiled
	// seconds allocated (go tool pprof -sample_index=alloc_space -base).
	fetchPprof(ctx, adminURL+"/debug/pprof/allocs", path+".allocs0")
	// CHAOS_PROFILE_TRACE=1: an execution trace of the same seconds
	// (go tool trace -pprof=sched|sync|syscall|net: where requests waited).
	var wg sync.WaitGroup
	if os.Getenv("CHAOS_PROFILE_TRACE") != "" {
		wg.Go(func() { fetchPprof(ctx, adminURL+"/debug/pprof/trace?seconds="+url.QueryEscape(secs), path+".trace") })
	}
	defer wg.Wait()
	fetchPprof(ctx, adminURL+"/debug/pprof/profile?seconds="+url.QueryEscape(secs), path)
	fetchPprof(ctx, adminURL+"/debug/pprof/allocs", path+".allocs1")
}

// fetchPprof writes what Caddy's admin endpoint answers at u to path.
func fetchPprof(ctx context.Context, u, path string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		log.Print(err)
		return
	}
	// adminClient's timeout is shorter than a long profile.
	res, err := (&http.Client{Transport: adminClient.Transport}).Do(req)
	if err != nil {
		log.Printf("profile: %v", err)
		return
	}
	defer res.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		log.Printf("profile: %v", err)
		return
	}
	if _, err := io.Copy(f, res.Body); err != nil {
		log.Printf("profile: %v", err)
	}
	if err := f.Close(); err != nil {
		log.Printf("profile: %v", err)
	}
	log.Printf("profile: %s", path)
}
