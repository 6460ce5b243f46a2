package main

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// fmtMS formats a latency in milliseconds.
func fmtMS(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case ms < 10:
		return fmt.Sprintf("%.1f", ms)
	default:
		return fmt.Sprintf("%.0f", ms)
	}
}

func pct(f float64) string {
	if f == 0 {
		return "0"
	}
	if f < 0.001 {
		return "<0.1%"
	}
	return fmt.Sprintf("%.1f%%", 100*f)
}

// windowSamples returns the samples started in p.
func windowSamples(all []Sample, p Phase) []Sample {
	return filter(all, func(s Sample) bool { return !s.Start.Before(p.Start) && s.Start.Before(p.End) })
}

func scrapesIn(all []ScrapePoint, p Phase) []ScrapePoint {
	var out []ScrapePoint
	for _, s := range all {
		if !s.At.Before(p.Start) && s.At.Before(p.End) {
			out = append(out, s)
		}
	}
	return out
}

func ofClass(s []Sample, classes ...Class) []Sample {
	return filter(s, func(x Sample) bool { return slices.Contains(classes, x.Class) })
}

func everCached(s []Sample) []Sample { return filter(s, func(x Sample) bool { return x.EverCached }) }

// inGap reports whether a sample started while craftedge itself was down
// (fault 8's kill to ready).
func (r *Result) inGap(s Sample) bool {
	return !r.Restart.KilledAt.IsZero() && !s.Start.Before(r.Restart.KilledAt) && s.Start.Before(r.Restart.ReadyAt)
}

// straddlesCraftDown reports whether s, started in phase i, was still in
// flight when the next phase took Craft down.
func (r *Result) straddlesCraftDown(i int, s Sample) bool {
	if i+1 >= len(r.Phases) || r.Phases[i+1].CraftUp {
		return false
	}
	return s.Start.Add(s.Latency).After(r.Phases[i].End)
}

// Target is one checked target.
type Target struct {
	Name   string
	Window string
	Met    bool
	Detail string
}

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "MISS"
}

// targets evaluates every target.
func (r *Result) targets() []Target {
	var out []Target
	var healthy *Phase
	for i := range r.Phases {
		p := &r.Phases[i]
		if p.Fault == 0 {
			healthy = p
		}
		if p.Fault <= 0 {
			continue
		}
		w := windowSamples(r.Samples, *p)
		visitors := everCached(ofClass(w, visitorClasses...))
		n5 := summarize(visitors).ByClass["5xx"]
		out = append(out, Target{"zero 5xx to visitors, pages ever cached", p.Name, n5 == 0,
			fmt.Sprintf("%d of %d requests 5xx", n5, len(visitors))})
		if healthy != nil {
			base := summarize(everCached(ofClass(windowSamples(r.Samples, *healthy), ClassPage)))
			cur := summarize(everCached(ofClass(w, ClassPage)))
			out = append(out, Target{"p95 of cached pages within 2x healthy", p.Name, cur.P95 <= 2*base.P95,
				fmt.Sprintf("p95 %s ms vs healthy %s ms (%.1fx)", fmtMS(cur.P95), fmtMS(base.P95), ratio(cur.P95, base.P95))})
			if p.Fault == 2 {
				// Craft slow: copies answer after stale_after, not
				// after the timeout (issue 16).
				out = append(out, Target{"p99 of cached pages within 2x healthy", p.Name, cur.P99 <= 2*base.P99,
					fmt.Sprintf("p99 %s ms vs healthy %s ms (%.1fx)", fmtMS(cur.P99), fmtMS(base.P99), ratio(cur.P99, base.P99))})
			}
			if p.Fault >= 4 && p.Fault <= 6 {
				bl := summarize(everCached(ofClass(windowSamples(r.Samples, *healthy), ClassLive)))
				cl := summarize(everCached(ofClass(w, ClassLive)))
				out = append(out, Target{"p95 of cached live vendor reads within 2x healthy", p.Name, cl.P95 <= 2*bl.P95,
					fmt.Sprintf("p95 %s ms vs healthy %s ms (%.1fx)", fmtMS(cl.P95), fmtMS(bl.P95), ratio(cl.P95, bl.P95))})
			}
		}
	}
	// Saves succeed whenever Craft is up (fault 8: except while craftedge
	// itself is down, kill to ready; and a save still in flight when the
	// next window takes Craft down is not counted).
	for i, p := range r.Phases {
		if !p.CraftUp || p.Fault < 0 {
			continue
		}
		saves := filter(ofClass(windowSamples(r.Samples, p), ClassSave), func(s Sample) bool {
			return !r.inGap(s) && !r.straddlesCraftDown(i, s)
		})
		ok := 0
		for _, s := range saves {
			if s.Status/100 == 2 {
				ok++
			}
		}
		if p.Fault == 0 {
			continue // reported below in one line
		}
		out = append(out, Target{"editors' saves succeed (Craft up)", p.Name, ok == len(saves),
			fmt.Sprintf("%d of %d saves 2xx", ok, len(saves))})
	}
	hOK, hN, straddling := 0, 0, 0
	for i, p := range r.Phases {
		if p.Fault != 0 {
			continue
		}
		for _, s := range ofClass(windowSamples(r.Samples, p), ClassSave) {
			if r.straddlesCraftDown(i, s) {
				straddling++
				continue
			}
			hN++
			if s.Status/100 == 2 {
				hOK++
			}
		}
	}
	out = append(out, Target{"editors' saves succeed (Craft up)", "healthy windows", hOK == hN,
		fmt.Sprintf("%d of %d saves 2xx (%d still in flight when Craft went down not counted)", hOK, hN, straddling)})

	o := r.Outbox
	out = append(out, Target{"every acknowledged outbox write reaches the vendor exactly once", "whole run (incl. fault 8)",
		len(o.Lost) == 0 && len(o.Duplicated) == 0 && o.Acked > 0,
		fmt.Sprintf("%d acknowledged (%d in the burst before the kill): %d lost, %d duplicated", o.Acked, o.Burst, len(o.Lost), len(o.Duplicated))})
	rs := r.Restart
	out = append(out, Target{"every record served after the restart", "8. craftedge SIGKILL + restart",
		rs.Err == nil && !rs.ReadyAt.IsZero() && len(rs.RecordsNotServed) == 0,
		fmt.Sprintf("%d of %d not served right after the restart", len(rs.RecordsNotServed), r.Cfg.products)})
	out = append(out, Target{"snapshots survive the restart", "8. craftedge SIGKILL + restart",
		rs.SnapshotsAfter >= rs.SnapshotsBefore && rs.SnapshotsBefore > 0,
		fmt.Sprintf("%d snapshots before the kill, %d after", rs.SnapshotsBefore, rs.SnapshotsAfter)})
	if v := r.warmRestart(); v != nil {
		out = append(out, Target{"after the SIGKILL restart, page p95 within 1.1x of the healthy window", v.kill.Name,
			v.healthyP95 > 0 && float64(v.afterP95) <= warmP95Limit*float64(v.healthyP95),
			fmt.Sprintf("p95 %s ms after the restart vs %s ms (%.2fx)", fmtMS(v.afterP95), fmtMS(v.healthyP95), ratio(v.afterP95, v.healthyP95))})
		got := fmt.Sprintf("no second within %s reached %s", warmRecoveryLimit, pct(warmHitShare*v.healthyHit))
		if v.recoveredOK {
			got = fmt.Sprintf("%s reached in the second ending %s after the restart", pct(warmHitShare*v.healthyHit), v.recoveredAfter)
		}
		out = append(out, Target{"hit ratio back to 90% of the healthy window's within 10 s of the restart", v.kill.Name, v.recoveredOK,
			fmt.Sprintf("healthy %s: %s", pct(v.healthyHit), got)})
	}
	if c := r.Records8; c != nil {
		out = append(out, Target{"every record matches the vendor after the restart", "after fault 8",
			len(c.Mismatched) == 0, fmt.Sprintf("%d compared, %d differed at first, %d lost", c.Compared, c.FirstMismatched, len(c.Mismatched))})
	}
	if c := r.Heal7; c != nil {
		out = append(out, Target{"delta sync heals the records after dropped webhooks", "after fault 7",
			len(c.Mismatched) == 0, fmt.Sprintf("%d compared, %d stale at first, %d lost, healed after %s", c.Compared, c.FirstMismatched, len(c.Mismatched), c.HealedAfter.Round(100*time.Millisecond))})
	}
	return out
}

// warmView is fault 8 against the healthy window before it: how fast the
// memory tier is warm again after the restart (issue 16, warm start).
type warmView struct {
	healthy, kill Phase
	healthyHit    float64       // memory hit ratio of the healthy window's page views
	healthyP95    time.Duration // page p95 of the healthy window
	// checkP95 is the page p95 of the healthy window before that one,
	// fault 7's records check (writes and vendor changes paused a
	// while): what fault 8 was compared with before the suite gained a
	// window (0 when there is none).
	checkP95       time.Duration
	afterP95       time.Duration // page p95 from the restart to the window's end
	afterN         int
	laterP95       time.Duration // page p95 from 1 s after the restart to the window's end
	healthySeries  []HitPoint    // per second from the healthy window's start
	killSeries     []HitPoint    // per second from the SIGKILL window's start
	restartSeries  []HitPoint    // per second from the restart, 10 s (into the next window if shorter)
	recoveredAfter time.Duration
	recoveredOK    bool // some second within 10 s reached 90% of healthyHit
	// warmCells is the warm start's progress per second of restartSeries
	// (health scraped every second: entries refilled, "done" once done);
	// warmDone the first reading after the restart that said done.
	warmCells []string
	warmDone  *WarmStartHealth
	// healthyCPU is the CPU craftedge and the suite's process used per
	// second in the healthy window; cpuCells the same per second of
	// restartSeries (from the health scrapes).
	healthyCPU cpuRate
	cpuCells   []string
	// slowest are the slowest page views of the first second after the
	// restart, slowest first (what sets its p95).
	slowest []Sample
	// byStatus compares the page views of the healthy window and those
	// from the restart to the window's end by Cache-Status: what makes
	// the p95 after the restart.
	byStatus []statusRow
}

// statusRow is one Cache-Status's page views in the healthy window and
// after the restart.
type statusRow struct {
	status         string
	healthy, after Summary
}

// byCacheStatus groups two sets of samples by Cache-Status (without the
// cache name), most frequent after the restart first.
func byCacheStatus(healthy, after []Sample) []statusRow {
	group := func(list []Sample) map[string][]Sample {
		m := map[string][]Sample{}
		for _, s := range list {
			k := cacheStatusDetail(s.CacheStatus)
			m[k] = append(m[k], s)
		}
		return m
	}
	h, a := group(healthy), group(after)
	var rows []statusRow
	for k := range h {
		rows = append(rows, statusRow{status: k, healthy: summarize(h[k]), after: summarize(a[k])})
	}
	for k := range a {
		if _, ok := h[k]; !ok {
			rows = append(rows, statusRow{status: k, after: summarize(a[k])})
		}
	}
	slices.SortFunc(rows, func(x, y statusRow) int {
		return cmp.Or(cmp.Compare(y.after.N, x.after.N), cmp.Compare(y.healthy.N, x.healthy.N), strings.Compare(x.status, y.status))
	})
	return rows
}

// warmSlowest is how many of the first second's slowest page views the
// report lists.
const warmSlowest = 10

// warmRecoveryLimit is how soon after the restart the page hit ratio must be
// back to warmHitShare of the healthy window's, and warmP95Limit how close
// the page p95 after the restart must be to the healthy window's (issue 16).
const (
	warmRecoveryLimit = 10 * time.Second
	warmHitShare      = 0.9
	warmP95Limit      = 1.1
)

// warmRestart returns the view, nil when fault 8 did not run, has no
// healthy window before it, or craftedge never came back.
func (r *Result) warmRestart() *warmView {
	rs := r.Restart
	if rs.KilledAt.IsZero() || rs.ReadyAt.IsZero() {
		return nil
	}
	for i, p := range r.Phases {
		if p.Fault != 8 || i == 0 || r.Phases[i-1].Fault != 0 {
			continue
		}
		pages := ofClass(r.Samples, ClassPage)
		v := &warmView{healthy: r.Phases[i-1], kill: p}
		h := windowSamples(pages, v.healthy)
		v.healthyHit = hitRatio(h)
		v.healthyP95 = summarize(h).P95
		if i >= 2 && r.Phases[i-2].Fault == 0 {
			v.checkP95 = summarize(windowSamples(pages, r.Phases[i-2])).P95
		}
		afterSamples := windowSamples(pages, Phase{Start: rs.ReadyAt, End: p.End})
		v.byStatus = byCacheStatus(h, afterSamples)
		after := summarize(afterSamples)
		v.afterP95, v.afterN = after.P95, after.N
		v.laterP95 = summarize(windowSamples(pages, Phase{Start: rs.ReadyAt.Add(time.Second), End: p.End})).P95
		v.healthySeries = hitSeries(pages, v.healthy.Start, v.healthy.End, time.Second)
		v.killSeries = hitSeries(pages, p.Start, p.End, time.Second)
		v.restartSeries = hitSeries(pages, rs.ReadyAt, rs.ReadyAt.Add(warmRecoveryLimit), time.Second)
		v.recoveredAfter, v.recoveredOK = recovered(v.restartSeries, warmHitShare*v.healthyHit, time.Second)
		v.warmCells, v.warmDone = warmProgress(r.Scrapes, rs.ReadyAt, len(v.restartSeries))
		v.healthyCPU = cpuBetween(r.Scrapes, v.healthy.Start, v.healthy.End)
		for i := range v.restartSeries {
			from := rs.ReadyAt.Add(time.Duration(i) * time.Second)
			c := cpuBetween(r.Scrapes, from, from.Add(time.Second))
			v.cpuCells = append(v.cpuCells, c.String())
		}
		v.slowest = windowSamples(pages, Phase{Start: rs.ReadyAt, End: rs.ReadyAt.Add(time.Second)})
		slices.SortFunc(v.slowest, func(a, b Sample) int { return cmp.Compare(b.Latency, a.Latency) })
		v.slowest = v.slowest[:min(len(v.slowest), warmSlowest)]
		return v
	}
	return nil
}

// cpuRate is CPU seconds per second of craftedge and of the suite's own
// process (load generator, origin, simulator).
type cpuRate struct {
	craftedge, suite float64
	ok               bool
}

func (c cpuRate) String() string {
	if !c.ok {
		return "–"
	}
	return fmt.Sprintf("%.2f / %.2f", c.craftedge, c.suite)
}

// cpuBetween is the CPU used per second between from and to, from the
// consecutive scrapes of one craftedge process whose later reading falls
// in [from, to) (so a second's value covers about the second before each
// reading).
func cpuBetween(scrapes []ScrapePoint, from, to time.Time) cpuRate {
	var ce, su, dt float64
	for i := 1; i < len(scrapes); i++ {
		a, b := scrapes[i-1], scrapes[i]
		if b.At.Before(from) || !b.At.Before(to) || a.Pid == 0 || a.Pid != b.Pid {
			continue
		}
		ce += b.CraftedgeCPU - a.CraftedgeCPU
		su += b.SuiteCPU - a.SuiteCPU
		dt += b.At.Sub(a.At).Seconds()
	}
	if dt == 0 {
		return cpuRate{}
	}
	return cpuRate{craftedge: ce / dt, suite: su / dt, ok: true}
}

// warmProgress reads the warm start's progress from the health scrapes of
// the n seconds from ready: per second, the entries refilled at the last
// scrape in it ("done N" once done, "–" without a scrape), and the first
// scrape saying done.
func warmProgress(scrapes []ScrapePoint, ready time.Time, n int) ([]string, *WarmStartHealth) {
	cells := make([]string, n)
	var done *WarmStartHealth
	for i := range cells {
		cells[i] = "–"
	}
	for _, sp := range scrapes {
		if !sp.OK || sp.At.Before(ready) {
			continue
		}
		w := sp.Warm
		if done == nil && w.State == "done" {
			done = &w
		}
		if i := int(sp.At.Sub(ready) / time.Second); i < n {
			switch w.State {
			case "done":
				cells[i] = fmt.Sprintf("done %d", w.Refilled)
			case "running":
				cells[i] = fmt.Sprint(w.Refilled)
			default:
				cells[i] = w.State
			}
		}
	}
	return cells, done
}

func hitCells(series []HitPoint) []string {
	out := make([]string, len(series))
	for i, h := range series {
		if h.N == 0 {
			out[i] = "–"
			continue
		}
		out[i] = fmt.Sprintf("%.0f%%", 100*h.Ratio())
	}
	return out
}

// renderWarm renders the warm restart section.
func renderWarm(p func(string, ...any), r *Result, v *warmView) {
	rs := r.Restart
	p("## Warm restart (fault 8, `warm_start %s`)", r.Cfg.warmStart)
	p("")
	if rs.LoadAvg != "" {
		p("Load average (1, 5, 15 min) just before the kill: %s (2 CPUs).", rs.LoadAvg)
		p("")
	}
	p("Page views, memory hits (`Cache-Status` hit) among responses per second (the last row: page p95 per second after the restart). craftedge was SIGKILLed %.1f s into the SIGKILL window and answered again %s later. Healthy window before it: hit ratio %s, p95 %s ms; from the restart to the window's end (%d page views): p95 %s ms (%.2fx); from 1 s after the restart: p95 %s ms (%.2fx).",
		rs.KilledAt.Sub(v.kill.Start).Seconds(), rs.ReadyAt.Sub(rs.KilledAt).Round(time.Millisecond),
		pct(v.healthyHit), fmtMS(v.healthyP95), v.afterN, fmtMS(v.afterP95), ratio(v.afterP95, v.healthyP95), fmtMS(v.laterP95), ratio(v.laterP95, v.healthyP95))
	p("")
	n := max(len(v.healthySeries), len(v.killSeries), len(v.restartSeries))
	head := []string{"second"}
	for i := range n {
		head = append(head, fmt.Sprint(i+1))
	}
	p("| %s |", strings.Join(head, " | "))
	p("|---%s|", strings.Repeat("|---:", n))
	row := func(name string, cells []string) {
		for len(cells) < n {
			cells = append(cells, "")
		}
		p("| %s | %s |", name, strings.Join(cells, " | "))
	}
	row(v.healthy.Name+" (before)", hitCells(v.healthySeries))
	row(v.kill.Name, hitCells(v.killSeries))
	row("after the restart", hitCells(v.restartSeries))
	var p95s []string
	for _, h := range v.restartSeries {
		p95s = append(p95s, fmtMS(h.P95))
	}
	row("after the restart: p95 ms", p95s)
	row("after the restart: entries refilled (health)", v.warmCells)
	row("after the restart: CPU s/s, craftedge / suite", v.cpuCells)
	p("")
	p("CPU (seconds per second, from the health scrapes): craftedge / the suite's process (load generator, origin, simulator) in the healthy window before: %s.", v.healthyCPU)
	p("")
	if v.checkP95 > 0 {
		p("Against the healthy window before that one (fault 7's records check, outbox writes and vendor changes paused until every record matched): page p95 %s ms, after the restart %.2fx.", fmtMS(v.checkP95), ratio(v.afterP95, v.checkP95))
		p("")
	}
	if w := v.warmDone; w != nil {
		p("Refill (health `warm_start`): %d entries, %d of them first as the pages served most before the kill, and %d put in from their snapshot for a request that came before the refill reached them; done %d ms after craftedge started (%d ms of it paused to leave the CPU to requests); skipped: %d already stored by a request, %d purged; memory full: %v.",
			w.Refilled, w.ServedFirst, w.OnRequest, w.ElapsedMS, w.PausedMS, w.SkippedPresent, w.SkippedPurged, w.Full)
		p("")
	}
	if len(v.byStatus) > 0 {
		p("Page views by `Cache-Status`, healthy window and from the restart to the window's end (share of the window's page views, p50 and p95 ms):")
		p("")
		p("| Cache-Status | healthy | p50 | p95 | after the restart | p50 | p95 |")
		p("|---|---:|---:|---:|---:|---:|---:|")
		share := func(n, total int) string { return fmt.Sprintf("%d (%.1f%%)", n, 100*float64(n)/float64(max(total, 1))) }
		var hn, an int
		for _, row := range v.byStatus {
			hn, an = hn+row.healthy.N, an+row.after.N
		}
		for _, row := range v.byStatus {
			p("| `%s` | %s | %s | %s | %s | %s | %s |", row.status, share(row.healthy.N, hn), fmtMS(row.healthy.P50), fmtMS(row.healthy.P95),
				share(row.after.N, an), fmtMS(row.after.P50), fmtMS(row.after.P95))
		}
		p("")
	}
	if len(v.slowest) > 0 {
		var cells []string
		for _, s := range v.slowest {
			cs := s.CacheStatus
			if cs == "" {
				cs = fmt.Sprintf("status %d", s.Status)
			}
			cells = append(cells, fmt.Sprintf("+%d ms: %s ms `%s`", s.Start.Sub(r.Restart.ReadyAt).Milliseconds(), fmtMS(s.Latency), cs))
		}
		p("Slowest page views of the first second after the restart (started at + from the restart, took, Cache-Status): %s.", strings.Join(cells, "; "))
		p("")
	}
}

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func joinStates(s []string) string {
	if len(s) == 0 {
		return "–"
	}
	return strings.Join(s, "→")
}

// renderReport renders the markdown report.
func renderReport(r *Result) string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	c := r.Cfg
	mode := "full"
	if c.short {
		mode = "short"
	}
	p("# craftedge chaos suite: results")
	p("")
	p("Run of %s, commit %s, %s mode (`go run ./bench/chaos%s`): warm-up %s, healthy windows %s, fault windows %s, `sync every %s`, `purge_mode %s`, `-seed %d`; %d page URLs (Zipf s=1.1), %d vendor products.",
		c.date, c.commit, mode, map[bool]string{true: " -short"}[c.short], c.warmup, c.healthy, c.fault, c.syncEvery, c.purgeMode, c.seed, c.pages, c.products)
	p("Load per second: %.0f page views, %.0f CP GETs and %.0f saves (editor session; saves at random, Poisson), %.0f read-model GETs, %.0f live vendor reads, %.0f outbox writes, %.0f vendor-side changes (each a signed webhook). Loopback, 2 CPUs shared by the load generator, craftedge, origin and simulator.",
		c.rates.Page, c.rates.CP, c.rates.Save, c.rates.ReadModel, c.rates.Live, c.rates.Outbox, c.rates.VendorChange)
	p("")
	p("## Visitors: anonymous page views")
	p("")
	p("Latency in ms over responses (transport errors counted apart). \"Ever cached\": URLs craftedge had served from or stored in its cache before the request.")
	p("")
	p("| window | requests | p50 | p95 | p99 | 4xx | 5xx | transport | hit | miss | stale | snapshot | fallback | ever cached: 5xx | ever cached: p95 | ever cached: p99 |")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, ph := range r.Phases {
		w := ofClass(windowSamples(r.Samples, ph), ClassPage)
		s := summarize(w)
		ec := summarize(everCached(w))
		p("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d | %s | %s |", ph.Name, s.N,
			fmtMS(s.P50), fmtMS(s.P95), fmtMS(s.P99),
			pct(s.Rate(s.ByClass["4xx"])), pct(s.Rate(s.ByClass["5xx"])), pct(s.Rate(s.ByClass["transport"])),
			pct(s.ServeShare(ServeHit)), pct(s.ServeShare(ServeMiss)), pct(s.ServeShare(ServeStale)),
			pct(s.ServeShare(ServeSnapshot)), pct(s.ServeShare(ServeFallback)), ec.ByClass["5xx"], fmtMS(ec.P95), fmtMS(ec.P99))
	}
	p("")
	if v := r.warmRestart(); v != nil {
		renderWarm(p, r, v)
	}
	p("## Editors, read model, live vendor reads, outbox")
	p("")
	p("| window | CP GETs 2xx (bypass) | saves 2xx | save p95 | read model p95 | read model 5xx | live p95 | live 5xx | live stale+snapshot | outbox 202 |")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, ph := range r.Phases {
		w := windowSamples(r.Samples, ph)
		cp := summarize(ofClass(w, ClassCP))
		sv := summarize(ofClass(w, ClassSave))
		rm := summarize(ofClass(w, ClassReadModel))
		lv := summarize(ofClass(w, ClassLive))
		ob := ofClass(w, ClassOutbox)
		acc := len(filter(ob, func(s Sample) bool { return s.Status == 202 }))
		p("| %s | %d/%d (%s bypass) | %d/%d | %s | %s | %d | %s | %d | %s | %d/%d |", ph.Name,
			cp.ByClass["2xx"], cp.N, pct(cp.ServeShare(ServeBypass)), sv.ByClass["2xx"], sv.N, fmtMS(sv.P95),
			fmtMS(rm.P95), rm.ByClass["5xx"], fmtMS(lv.P95), lv.ByClass["5xx"],
			pct(lv.ServeShare(ServeStale)+lv.ServeShare(ServeSnapshot)), acc, len(ob))
	}
	p("")
	if sc := r.slowCraft(); sc != nil {
		renderSlowCraft(p, sc)
	}
	p("## Breakers and queues (health scraped every second)")
	p("")
	p("| window | Craft breaker | vendor breaker | outbox depth (max) | refetch depth (max) | queue age max (s) | dead letters | scrapes failed |")
	p("|---|---|---|---:|---:|---:|---:|---:|")
	for _, ph := range r.Phases {
		s := summarizeScrapes(scrapesIn(r.Scrapes, ph))
		p("| %s | %s | %s | %d | %d | %.1f | %d | %d/%d |", ph.Name, joinStates(s.Craft), joinStates(s.Shop),
			s.MaxOutbox, s.MaxRefetch, s.MaxQueueAge, s.MaxDead, s.Failed, s.Points)
	}
	p("")
	p("## What was lost (faults 7 and 8)")
	p("")
	if c := r.Heal7; c != nil {
		p("- Fault 7 (webhooks dropped): after the window, writes and vendor changes paused, queues drained (%v); %d records compared with the simulator, %d stale at first; every record matched after %s; **lost: %d**%s.",
			c.QueueDrained, c.Compared, c.FirstMismatched, c.HealedAfter.Round(100*time.Millisecond), len(c.Mismatched), listOf(c.Mismatched))
	}
	rs := r.Restart
	if !rs.KilledAt.IsZero() {
		gap := "never came back"
		if !rs.ReadyAt.IsZero() {
			gap = rs.ReadyAt.Sub(rs.KilledAt).Round(time.Millisecond).String()
		}
		p("- Fault 8 (SIGKILL): a burst of 30 outbox writes (%d acknowledged) right before the kill, %d outbox and %d refetch jobs pending at the kill; craftedge answered again after %s; snapshots %d before, %d after; records not served right after the restart: %d%s.",
			rs.BurstAcked, rs.PendingAtKill, rs.RefetchBeforeKill, gap, rs.SnapshotsBefore, rs.SnapshotsAfter, len(rs.RecordsNotServed), listOf(rs.RecordsNotServed))
		gapSamples := filter(r.Samples, r.inGap)
		p("  Requests started while craftedge was down: %d (transport errors: %d).", len(gapSamples), summarize(gapSamples).ByClass["transport"])
	}
	o := r.Outbox
	p("- Outbox, whole run: %d writes acknowledged (202), checked against the simulator's write log (each write told apart by its body): **lost %d, duplicated %d**%s%s; %d repeats answered from the vendor's idempotency store (retries of writes it had applied).",
		o.Acked, len(o.Lost), len(o.Duplicated), listOf(o.Lost), listOf(o.Duplicated), o.Replays)
	if c := r.Records8; c != nil {
		p("- Records after fault 8 (final window): %d compared, %d differed at first, all matched after %s; **lost: %d**%s.",
			c.Compared, c.FirstMismatched, c.HealedAfter.Round(100*time.Millisecond), len(c.Mismatched), listOf(c.Mismatched))
	}
	p("- Webhooks from the simulator: %d delivered, %d dropped (fault 7), %d failed (craftedge down or refusing); %d vendor-side changes in all.",
		r.Webhooks.Sent, r.Webhooks.Dropped, r.Webhooks.Failed, r.Changes)
	if len(r.Skipped) > 0 {
		p("- Generator ticks skipped because every slot of a class was busy: %v.", r.Skipped)
	}
	p("")
	p("## Targets")
	p("")
	p("| target | window | result | figures |")
	p("|---|---|---|---|")
	met := 0
	ts := r.targets()
	for _, t := range ts {
		if t.Met {
			met++
		}
		p("| %s | %s | %s | %s |", t.Name, t.Window, verdict(t.Met), t.Detail)
	}
	p("")
	p("%d of %d targets met.", met, len(ts))
	return b.String()
}

func listOf(s []string) string {
	if len(s) == 0 {
		return ""
	}
	if len(s) > 10 {
		return ": " + strings.Join(s[:10], ", ") + fmt.Sprintf(" and %d more", len(s)-10)
	}
	return ": " + strings.Join(s, ", ")
}
