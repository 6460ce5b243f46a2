package main

import (
	"context"
	"sync"
	"time"
)

// ScrapePoint is one reading of craftedge's health endpoint.
type ScrapePoint struct {
	At             time.Time
	OK             bool // the admin endpoint answered
	Craft, Shop    string
	Outbox         int // ready+running outbox jobs
	Refetch, Sync  int
	Dead           int     // dead letters, every kind
	QueueAge       float64 // oldest due job's wait, seconds, worst kind
	Snapshots      int64
	SnapshotsQueue int
	Warm           WarmStartHealth // the warm start's progress
}

// scraper reads health every interval while ctx lasts.
type scraper struct {
	g  *gateway
	mu sync.Mutex
	pt []ScrapePoint
}

func (s *scraper) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p := ScrapePoint{At: time.Now()}
		if h, err := s.g.health(ctx); err == nil {
			p.OK = true
			p.Craft, p.Shop = h.breaker("craft"), h.breaker("shop")
			p.Outbox, p.Refetch, p.Sync = h.pending("outbox"), h.pending("vendor.refetch"), h.pending("vendor.sync")
			if h.Jobs != nil {
				for _, k := range h.Jobs.Kinds {
					p.Dead += k.Dead
					p.QueueAge = max(p.QueueAge, k.QueueAgeSeconds)
				}
			}
			p.Snapshots, p.SnapshotsQueue = h.Snapshots.Count, h.Snapshots.Pending
			p.Warm = h.WarmStart
		}
		s.mu.Lock()
		s.pt = append(s.pt, p)
		s.mu.Unlock()
	}
}

func (s *scraper) points() []ScrapePoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ScrapePoint(nil), s.pt...)
}

// ScrapeSummary is what the health readings of one window showed.
type ScrapeSummary struct {
	Points, Failed int
	Craft, Shop    []string // breaker states seen, in order of first sight
	MaxOutbox      int
	MaxRefetch     int
	MaxQueueAge    float64
	MaxDead        int
}

func summarizeScrapes(pts []ScrapePoint) ScrapeSummary {
	var s ScrapeSummary
	add := func(list []string, v string) []string {
		if v == "" {
			return list
		}
		for _, x := range list {
			if x == v {
				return list
			}
		}
		return append(list, v)
	}
	for _, p := range pts {
		s.Points++
		if !p.OK {
			s.Failed++
			continue
		}
		s.Craft, s.Shop = add(s.Craft, p.Craft), add(s.Shop, p.Shop)
		s.MaxOutbox = max(s.MaxOutbox, p.Outbox)
		s.MaxRefetch = max(s.MaxRefetch, p.Refetch)
		s.MaxQueueAge = max(s.MaxQueueAge, p.QueueAge)
		s.MaxDead = max(s.MaxDead, p.Dead)
	}
	return s
}
