package main

import (
	"fmt"
	"strings"
	"time"
)

// clusterTargets are the cluster mode's own targets.
func (cr *ClusterResult) targets() []Target {
	stale, checked, saveErrs, older := 0, 0, 0, 0
	for _, p := range cr.Purges {
		stale += len(p.Stale)
		older += len(p.StaleDuringOutage)
		checked += p.Checked
		if p.SaveErr != "" {
			saveErrs++
		}
	}
	return []Target{
		{"every node sees NATS go away", "9. NATS down", cr.Disconnected, fmt.Sprintf("%d nodes", cr.Nodes)},
		{"every node ready and caught up once NATS is back", "healthy after 9", cr.Ready,
			fmt.Sprintf("after %s (bound: one healthy window)", cr.ReadyAfter.Round(10*time.Millisecond))},
		{"no stale page after a purge once NATS is back", "healthy after 9",
			len(cr.Purges) > 0 && saveErrs == 0 && stale == 0 && older > 0 && checked == len(cr.Purges)*cr.Nodes,
			fmt.Sprintf("%d saves through node1 while NATS was down (%d failed), leaving %d peer copies older; once NATS was back %d pages compared on %d nodes, %d stale", len(cr.Purges), saveErrs, older, checked, cr.Nodes, stale)},
		{"survivors ready and caught up after a node is killed for good", "10. one node SIGKILLed for good", cr.SurvivorsReady,
			cr.Killed + " killed"},
	}
}

// renderCluster is the report's cluster section, appended to renderReport.
func renderCluster(cr *ClusterResult) string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	p("")
	p("## Cluster mode (`-cluster %d`)", cr.Nodes)
	p("")
	p("%d craftedge processes, each with its own bbolt file and ports, joined through one NATS server with JetStream run by the suite; the load round-robin over the nodes (a killed node taken out of the rotation). Webhooks and the records checks go to node1. Faults: 9. NATS down for a window (the server shut down, then started again on the same port and store); 10. %s SIGKILLed for good. In this mode the rows above labelled with fault 8 are about that kill: records served by every survivor right after it, snapshots counted on node1 before and after.", cr.Nodes, cr.Killed)
	p("")
	p("While NATS was down, an editor saved each blog entry through node1 (each peer fetched the entry right before, so held a copy; from the outage until the check every save of the load went through node1 too, so a peer's copies changed only through the cluster's purges); once NATS was back and every node reported ready and caught up (`cluster.state` ready, connected, nothing queued, lag 0), each entry was fetched on every node and its revision compared with the origin's right after the save. The target needs at least one peer copy seen older than Craft's revision during the outage (the check exercised something) and none once NATS was back.")
	p("")
	p("| entry | revision after the save | nodes still older during the outage | nodes stale once NATS was back |")
	p("|---|---:|---|---|")
	for _, pc := range cr.Purges {
		stale := strings.Join(pc.Stale, ", ")
		if pc.SaveErr != "" {
			stale = "save failed: " + pc.SaveErr
		}
		p("| /blog/%s | %d | %s | %s |", pc.Slug, pc.Revision, orNone(pc.StaleDuringOutage), orDash(stale))
	}
	p("")
	p("| target | window | result | figures |")
	p("|---|---|---|---|")
	for _, t := range cr.targets() {
		p("| %s | %s | %s | %s |", t.Name, t.Window, verdict(t.Met), t.Detail)
	}
	return b.String()
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func orDash(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
