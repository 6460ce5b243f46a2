package main

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
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
	// CPU time used so far (user+system, seconds): by the craftedge
	// process (Pid; a restarted one starts again from 0) and by the
	// suite's own process (load generator, origin and simulator).
	Pid                    int
	CraftedgeCPU, SuiteCPU float64
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
		p.Pid, p.CraftedgeCPU = s.g.cpu()
		p.SuiteCPU = selfCPU()
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

// selfCPU is the suite process's CPU time so far, seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// procCPU is a process's CPU time so far (utime+stime of
// /proc/<pid>/stat), seconds; 0 where there is none.
func procCPU(pid int) float64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The fields after the command name, which is in parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / clockTicks
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's times (100 on
// Linux everywhere).
const clockTicks = 100
