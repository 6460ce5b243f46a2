package main

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// The Craft-slow window (fault 2) in detail: which page views make its
// ever-cached p99, and the editors' purges that land in it (issue 16,
// item 3).

// purgedBySave reports whether a page key ("p:/blog") carries the tags an
// editor's save purges: the home page, the blog index and the entries
// (demoorigin's savedEntryTags name the blog section, which they list).
func purgedBySave(key string) bool {
	path, ok := strings.CutPrefix(key, "p:")
	return ok && (path == "/" || path == "/blog" || strings.HasPrefix(path, "/blog/"))
}

// cacheStatusDetail is a Cache-Status without its cache name, for grouping
// ("hit", "fwd=stale; detail=stale-after", ...).
func cacheStatusDetail(v string) string {
	v = strings.TrimSpace(v)
	if rest, ok := strings.CutPrefix(v, "craftedge;"); ok {
		v = strings.TrimSpace(rest)
	}
	if v == "" {
		return "(none)"
	}
	return v
}

// SlowCraft is the breakdown of the Craft-slow window.
type SlowCraft struct {
	Window        Phase
	HealthyP99    time.Duration // ever-cached pages, the healthy window before it
	Threshold     time.Duration // 2x HealthyP99: the target
	Pages         int           // ever-cached page views in the window
	P99           time.Duration
	Over          int // of Pages, slower than Threshold
	OverBlog      int // of Over, pages an editor's save purges
	BlogShare     float64
	P99Others     time.Duration // p99 of the ever-cached views of the other pages
	SavesLanded   []time.Duration
	ByStatus      []SlowGroup // the views over Threshold, by page group and Cache-Status
	OverBySecond  []int       // the views over Threshold, by second of the window
	CountBySecond []int       // every ever-cached view, by second of the window
}

// SlowGroup counts the slow views of one page group and Cache-Status.
type SlowGroup struct {
	Group, Status string
	N             int
	Max           time.Duration
}

// slowCraft computes the breakdown, nil without a Craft-slow window or a
// healthy window before it.
func (r *Result) slowCraft() *SlowCraft {
	var healthy *Phase
	for i := range r.Phases {
		p := r.Phases[i]
		if p.Fault == 0 {
			healthy = &r.Phases[i]
		}
		if p.Fault != 2 || healthy == nil {
			continue
		}
		base := summarize(everCached(ofClass(windowSamples(r.Samples, *healthy), ClassPage)))
		w := filter(everCached(ofClass(windowSamples(r.Samples, p), ClassPage)), func(s Sample) bool { return s.Status != 0 })
		sc := &SlowCraft{Window: p, HealthyP99: base.P99, Threshold: 2 * base.P99, Pages: len(w), P99: summarize(w).P99}
		blog := filter(w, func(s Sample) bool { return purgedBySave(s.Key) })
		sc.BlogShare = float64(len(blog)) / float64(max(1, len(w)))
		sc.P99Others = summarize(filter(w, func(s Sample) bool { return !purgedBySave(s.Key) })).P99
		secs := int((p.End.Sub(p.Start) + time.Second - 1) / time.Second)
		sc.OverBySecond, sc.CountBySecond = make([]int, secs), make([]int, secs)
		groups := map[[2]string]*SlowGroup{}
		for _, s := range w {
			sec := min(int(s.Start.Sub(p.Start)/time.Second), secs-1)
			sc.CountBySecond[sec]++
			if s.Latency <= sc.Threshold {
				continue
			}
			sc.Over++
			sc.OverBySecond[sec]++
			g := "other pages"
			if purgedBySave(s.Key) {
				sc.OverBlog++
				g = "home, blog index, entries"
			}
			k := [2]string{g, cacheStatusDetail(s.CacheStatus)}
			if groups[k] == nil {
				groups[k] = &SlowGroup{Group: k[0], Status: k[1]}
			}
			groups[k].N++
			groups[k].Max = max(groups[k].Max, s.Latency)
		}
		for _, g := range groups {
			sc.ByStatus = append(sc.ByStatus, *g)
		}
		slices.SortFunc(sc.ByStatus, func(a, b SlowGroup) int { return b.N - a.N })
		// A save's purge is applied when its answer passes craftedge.
		for _, s := range ofClass(r.Samples, ClassSave) {
			if end := s.Start.Add(s.Latency); s.Status/100 == 2 && !end.Before(p.Start) && end.Before(p.End) {
				sc.SavesLanded = append(sc.SavesLanded, end.Sub(p.Start))
			}
		}
		slices.Sort(sc.SavesLanded)
		return sc
	}
	return nil
}

// renderSlowCraft writes the breakdown's section.
func renderSlowCraft(p func(string, ...any), sc *SlowCraft) {
	p("## Craft slow: what makes the p99 (fault 2)")
	p("")
	landed := make([]string, len(sc.SavesLanded))
	for i, d := range sc.SavesLanded {
		landed[i] = fmt.Sprintf("%.1f s", d.Seconds())
	}
	p("Ever-cached page views in the window: %d, p99 %s ms (target: 2x the healthy window's %s ms = %s ms); %d slower than that, %d of them the home page, the blog index or an entry (%.0f%% of the window's ever-cached views), which every editor's save purges. p99 of the other pages: %s ms. Saves answered (their `Cache-Purge-Tag` applied) %d times in the window%s.",
		sc.Pages, fmtMS(sc.P99), fmtMS(sc.HealthyP99), fmtMS(sc.Threshold), sc.Over, sc.OverBlog, 100*sc.BlogShare, fmtMS(sc.P99Others),
		len(sc.SavesLanded), map[bool]string{true: ", at " + strings.Join(landed, ", ") + " into it"}[len(landed) > 0])
	p("")
	if len(sc.ByStatus) > 0 {
		p("| pages | Cache-Status | views over the target | max ms |")
		p("|---|---|---:|---:|")
		for _, g := range sc.ByStatus {
			p("| %s | `%s` | %d | %s |", g.Group, g.Status, g.N, fmtMS(g.Max))
		}
		p("")
	}
	var b strings.Builder
	b.WriteString("| second |")
	for i := range sc.OverBySecond {
		fmt.Fprintf(&b, " %d |", i+1)
	}
	b.WriteString("\n|---|")
	for range sc.OverBySecond {
		b.WriteString("---:|")
	}
	b.WriteString("\n| over the target / views |")
	for i, n := range sc.OverBySecond {
		fmt.Fprintf(&b, " %d/%d |", n, sc.CountBySecond[i])
	}
	p("%s", b.String())
	p("")
}
