package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/craftedge/craftedge/vendorsim"
)

// chaosWriteTitle finds the write number in an outbox write's body, as
// outboxRequest writes it.
var chaosWriteTitle = regexp.MustCompile(`"Chaos write (\d+)"`)

// RecordsCheck compares every record craftedge's read model serves with
// the simulator's truth.
type RecordsCheck struct {
	Compared int
	// Mismatched lists the records still wrong (or not served) when the
	// check gave up: what was lost.
	Mismatched []string
	// FirstMismatched is how many were wrong at the first comparison.
	FirstMismatched int
	// HealedAfter is how long after the check started every record matched.
	HealedAfter time.Duration
	// QueueDrained reports that the outbox and refetch queues emptied first.
	QueueDrained bool
}

// readModelRecord is the part of a read-model answer the check compares.
type readModelRecord struct {
	Version string         `json:"version"`
	Fields  map[string]any `json:"fields"`
}

// compareRecords fetches every product through the gateway's read model and
// returns the ids that differ from the simulator (version, title, price,
// stock) or are not served.
func compareRecords(ctx context.Context, site string, sim *vendorsim.Sim, products int) []string {
	var bad []string
	for i := 1; i <= products; i++ {
		id := strconv.Itoa(i)
		truth, ok := sim.Get(vendorsim.KindProduct, id)
		if !ok {
			continue
		}
		got, status := fetchRecord(ctx, site, id)
		switch {
		case status != http.StatusOK:
			bad = append(bad, fmt.Sprintf("%s (status %d)", id, status))
		case got.Version != fmt.Sprint(truth["version"]):
			bad = append(bad, fmt.Sprintf("%s (version %s, vendor %v)", id, got.Version, truth["version"]))
		case fmt.Sprint(got.Fields["stock"]) != fmt.Sprint(truth["stock"]) ||
			fmt.Sprint(got.Fields["title"]) != fmt.Sprint(truth["title"].(map[string]any)["en"]):
			bad = append(bad, id+" (fields differ)")
		}
	}
	return bad
}

func fetchRecord(ctx context.Context, site, id string) (readModelRecord, int) {
	var rec readModelRecord
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, site+"/vendors/v1/shop/product/"+id, nil)
	if err != nil {
		return rec, 0
	}
	res, err := adminClient.Do(req)
	if err != nil {
		return rec, 0
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusOK {
		if err := json.NewDecoder(res.Body).Decode(&rec); err != nil {
			return rec, -1
		}
	}
	return rec, res.StatusCode
}

// checkRecords pauses writes and vendor changes, waits for the outbox and
// refetch queues to drain, then compares every record until all match or
// the deadline passes.
func checkRecords(ctx context.Context, g *gateway, load *loadGen, sim *vendorsim.Sim, products int, within time.Duration) RecordsCheck {
	load.pause()
	defer load.resume()
	start := time.Now()
	deadline := start.Add(within)
	var c RecordsCheck
	c.QueueDrained = waitDrained(ctx, g, deadline)
	first := true
	for {
		bad := compareRecords(ctx, g.siteURL(), sim, products)
		c.Compared = sim.Len(vendorsim.KindProduct)
		if first {
			c.FirstMismatched, first = len(bad), false
		}
		if len(bad) == 0 {
			c.HealedAfter = time.Since(start)
			return c
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			c.Mismatched = bad
			return c
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// waitDrained waits until no outbox or refetch job is ready or running.
func waitDrained(ctx context.Context, g *gateway, deadline time.Time) bool {
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if h, err := g.health(ctx); err == nil && h.pending("outbox") == 0 && h.pending("vendor.refetch") == 0 {
			return true
		}
		time.Sleep(200 * time.Millisecond)
	}
	return false
}

// OutboxCheck is the fate of every acknowledged outbox write.
type OutboxCheck struct {
	Acked, Burst int
	// Lost were acknowledged and never reached the simulator; Duplicated
	// reached it more than once (its write log counts effects per
	// Idempotency-Key).
	Lost, Duplicated []string
	// UnackedApplied counts writes the suite saw fail (no 202) whose
	// effect happened anyway (allowed: the client cannot know).
	UnackedDuplicated []string
	Replays           int // repeats the simulator answered from its idempotency store
}

// checkOutbox compares the acknowledged writes with the simulator's write
// log. Call it after the outbox queue drained.
//
// Writes are told apart by the number in their body's title ("Chaos write
// N", unique per write), not by the Idempotency-Key the vendor saw: the
// records handler scopes the caller's key to its caller, record and body
// (the job key is a hash), so the vendor never sees "chaos-N" itself.
func checkOutbox(sim *vendorsim.Sim, acked []ackedWrite, sent int64) OutboxCheck {
	effects := map[string]int{} // "chaos-N" → effects on the vendor
	keys := map[string]string{} // "chaos-N" → the Idempotency-Key the vendor saw
	for _, w := range sim.Writes() {
		if w.Kind != vendorsim.KindProduct {
			continue
		}
		if m := chaosWriteTitle.FindSubmatch(w.Body); m != nil {
			k := "chaos-" + string(m[1])
			effects[k]++
			keys[k] = w.Key
		}
	}
	var c OutboxCheck
	ackedKeys := map[string]bool{}
	for _, a := range acked {
		c.Acked++
		if a.Burst {
			c.Burst++
		}
		ackedKeys[a.Key] = true
		switch n := effects[a.Key]; {
		case n == 0:
			c.Lost = append(c.Lost, a.Key)
		case n > 1:
			c.Duplicated = append(c.Duplicated, fmt.Sprintf("%s x%d", a.Key, n))
		}
		if vk := keys[a.Key]; vk != "" {
			c.Replays += sim.Replays(vendorsim.KindProduct, vk)
		}
	}
	for i := int64(1); i <= sent; i++ {
		k := "chaos-" + strconv.FormatInt(i, 10)
		if !ackedKeys[k] && effects[k] > 1 {
			c.UnackedDuplicated = append(c.UnackedDuplicated, k)
		}
	}
	slices.Sort(c.Lost)
	return c
}
