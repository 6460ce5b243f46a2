package main

import (
	"bufio"
	"fmt"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/craftedge/craftedge/internal/natstest"
)

// BenchmarkClusterPurgeFanout: three craftedge processes on loopback and
// one NATS server; purges through node a's admin API, one at a time, until
// b and c have applied all of them. It reports the fan-out quantiles
// (histogram_quantile over craftedge_cluster_purge_fanout_seconds of b and
// c: from the purge's time on a to its application on b or c, the same
// clock); ns/op is a purge through a's admin API until both applied it.
//
//	go test -run '^$' -bench ClusterPurgeFanout -benchtime 500x ./cmd/craftedge/
func BenchmarkClusterPurgeFanout(b *testing.B) {
	nats := natstest.Start(b)
	origin := freeAddr(b)
	var nodes []*testNode
	for _, name := range []string{"a", "b", "c"} {
		nodes = append(nodes, startTestNode(b, name, nats.URL(), origin, "http://127.0.0.1:9"))
	}
	for _, n := range nodes {
		n.waitCaughtUp()
	}
	a := nodes[0]
	before := map[string]uint64{}
	for _, n := range nodes[1:] {
		before[n.name] = uint64(scrapeValue(b, n.admin, `craftedge_cluster_purges_applied_total{outcome="ok"}`))
	}
	b.ResetTimer()
	for i := range b.N {
		a.adminDo(http.MethodPost, "/craftedge/purge", fmt.Sprintf(`{"tags":["bench-%d"]}`, i))
		// One purge at a time: wait until b and c applied it (their
		// counter, read from /metrics: no NATS request).
		for _, n := range nodes[1:] {
			want := float64(before[n.name] + uint64(i) + 1)
			for scrapeValue(b, n.admin, `craftedge_cluster_purges_applied_total{outcome="ok"}`) < want {
				time.Sleep(time.Millisecond) // a poll, not a timing: the figure is the nodes' histogram
			}
		}
	}
	b.StopTimer()
	buckets := map[float64]float64{}
	for _, n := range nodes[1:] {
		for le, c := range scrapeBuckets(b, n.admin, "craftedge_cluster_purge_fanout_seconds") {
			buckets[le] += c
		}
	}
	for _, q := range []float64{0.5, 0.99} {
		b.ReportMetric(histogramQuantile(q, buckets)*1000, fmt.Sprintf("p%g-fanout-ms", q*100))
	}
}

// scrapeValue reads one series from a node's /metrics (-1 if absent).
func scrapeValue(tb testing.TB, admin, series string) float64 {
	tb.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				tb.Fatalf("bad metric line %q", sc.Text())
			}
			return f
		}
	}
	return -1
}

// scrapeBuckets reads a histogram's cumulative buckets from a node's
// /metrics: upper bound → count.
func scrapeBuckets(tb testing.TB, admin, name string) map[float64]float64 {
	tb.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[float64]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	prefix := name + `_bucket{le="`
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, prefix)
		if !ok {
			continue
		}
		le, count, _ := strings.Cut(rest, `"} `)
		bound, err1 := strconv.ParseFloat(le, 64)
		c, err2 := strconv.ParseFloat(count, 64)
		if err1 != nil || err2 != nil {
			tb.Fatalf("bad bucket line %q", line)
		}
		out[bound] = c
	}
	return out
}

// histogramQuantile is Prometheus's histogram_quantile over cumulative
// buckets (linear within a bucket).
func histogramQuantile(q float64, buckets map[float64]float64) float64 {
	bounds := make([]float64, 0, len(buckets))
	for le := range buckets {
		bounds = append(bounds, le)
	}
	sort.Float64s(bounds)
	if len(bounds) == 0 {
		return math.NaN()
	}
	total := buckets[bounds[len(bounds)-1]]
	rank := q * total
	prevBound, prevCount := 0.0, 0.0
	for _, le := range bounds {
		c := buckets[le]
		if c >= rank {
			if math.IsInf(le, 1) {
				return prevBound
			}
			return prevBound + (le-prevBound)*(rank-prevCount)/max(c-prevCount, 1)
		}
		prevBound, prevCount = le, c
	}
	return bounds[len(bounds)-1]
}
