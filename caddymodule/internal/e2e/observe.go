package e2e

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
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

// LogLines reads Caddy's JSON log file (nil when it does not exist yet); a
// line being written is skipped.
func LogLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}
