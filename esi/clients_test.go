package esi

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// clientPage serves an assembled page (two cached fragments, one of them
// compressed per request) in the coding named by ?coding=.
func clientPage(t *testing.T) (*httptest.Server, string) {
	t.Helper()
	s := newSite()
	s.page(t, "/nav", "<nav>menu "+strings.Repeat("item ", 50)+"</nav>", OutcomeHit)
	s.frags["/hello"] = Fragment{Body: []byte("<p id=hello>hello, visitor</p>")}
	page := `<!doctype html><html><body><esi:include src="/nav"/><main>` + strings.Repeat("<p>static text</p>", 500) +
		`</main><esi:include src="/hello"/></body></html>`
	want := strings.NewReplacer(`<esi:include src="/nav"/>`, "<nav>menu "+strings.Repeat("item ", 50)+"</nav>",
		`<esi:include src="/hello"/>`, "<p id=hello>hello, visitor</p>").Replace(page)
	tmpl := parsePage(t, page)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, err := NewAssembly(r.Context(), tmpl, []byte(page), s.sources(), DefaultLimits())
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		defer a.Close()
		if _, err := a.Prepare(WaitPrivate); err != nil {
			http.Error(w, err.Error(), 502)
			return
		}
		coding := r.URL.Query().Get("coding")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if coding != "" {
			w.Header().Set("Content-Encoding", coding)
		}
		if _, err := a.Write(w, coding); err != nil {
			panic(http.ErrAbortHandler)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, want
}

// TestCurlDecodes: curl --compressed (zlib, libzstd) reads both codings.
func TestCurlDecodes(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed")
	}
	srv, want := clientPage(t)
	for _, coding := range []string{CodingGzip, CodingZstd} {
		out, err := exec.Command(curl, "-sS", "--fail", "--compressed", "-H", "Accept-Encoding: "+coding, srv.URL+"/?coding="+coding).Output()
		if err != nil {
			t.Fatalf("curl %s: %v", coding, err)
		}
		if string(out) != want {
			t.Fatalf("curl %s: body differs (%d vs %d bytes)", coding, len(out), len(want))
		}
	}
}

// TestChromiumDecodes: headless Chromium (zlib and zstd decoders as in
// the browser) reads the whole gzip and zstd pages: one gzip member,
// concatenated zstd frames. Skipped without Chromium (CI installs it).
func TestChromiumDecodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	bin := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		t.Skip("chromium not installed")
	}
	srv, _ := clientPage(t)
	for _, coding := range []string{CodingGzip, CodingZstd} {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir="+t.TempDir(), "--dump-dom", srv.URL+"/?coding="+coding)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		cancel()
		if err != nil {
			t.Fatalf("chromium %s: %v\n%s", coding, err, stderr.String())
		}
		if os.Getenv("ESI_CHROMIUM_DEBUG") != "" {
			t.Logf("%s: %s", coding, out)
		}
		if !strings.Contains(string(out), "hello, visitor") || strings.Count(string(out), "static text") != 500 {
			t.Errorf("chromium %s: page not read whole (%d bytes)", coding, len(out))
		}
	}
}
