package e2e

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
)

// Scrape reads Caddy's admin /metrics and returns the value of one series
// (exact name with labels as Prometheus prints them), or -1 if absent.
func Scrape(g *Gateway, series string) float64 {
	g.T.Helper()
	r := g.Admin(http.MethodGet, "/metrics", "")
	WantStatus(g.T, r, 200)
	sc := bufio.NewScanner(strings.NewReader(r.Body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, series+" ") {
			v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(line, series)), 64)
			if err != nil {
				g.T.Fatalf("bad metric line %q", line)
			}
			return v
		}
	}
	return -1
}
