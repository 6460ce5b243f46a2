package status

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
	"github.com/craftedge/craftedge/jobs"
)

// chromiumPath is Debian's chromium package (.ci/run installs it).
const chromiumPath = "/usr/bin/chromium"

// TestStatusPageInBrowser loads the status page in headless Chromium
// against a real craftedge whose upstream fails, sees it red, clicks Retry
// on a dead letter and sees the job leave the dead-letter list. It saves
// screenshots (desktop and phone) to $CRAFTEDGE_ARTIFACTS (default: a temp
// dir), and the desktop one to testdata/status/screenshot.png when
// UPDATE_SCREENSHOT=1.
func TestStatusPageInBrowser(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing (%v): the status page's browser test needs Debian's chromium package "+
				"(apt-get install -y chromium, as .ci/run does)", chromiumPath, err)
		}
		t.Skipf("%s is missing: skipping the status page's browser test (apt-get install -y chromium to run it)", chromiumPath)
	}
	artifacts := os.Getenv("CRAFTEDGE_ARTIFACTS")
	if artifacts == "" {
		artifacts = t.TempDir()
	}
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}

	// A real craftedge whose upstream fails until its breaker opens, and
	// two dead letters: one that will succeed when retried, one poisoned.
	o := e2e.NewOrigin(t)
	e2e.HandleBoom(o, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	})
	g := startStatusGateway(t, o, statusOptions{globalExtra: `jobs {
			kind test.echo {
				max_attempts 1
				backoff 1ms 10ms
			}
		}`})
	for _, p := range e2e.BoomPaths {
		e2e.WantStatus(t, g.Get(p), http.StatusInternalServerError)
	}
	if st := e2e.BreakerState(g, "craft"); st != "open" {
		t.Fatalf("breaker %s after 3 failures over 3 paths, want open", st)
	}
	prefix := t.Name() + ":"
	flaky := enqueue(g, prefix+"flaky", "fail-first")
	poison := enqueue(g, prefix+"poison", "poison")
	e2e.WaitJobState(g, flaky.ID, jobs.StateDead)
	e2e.WaitJobState(g, poison.ID, jobs.StateDead)

	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("no-proxy-server", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(allocCtx)
	defer cancel()
	if err := chromedp.Do(ctx); err != nil { // starts the browser, with no timeout
		t.Fatalf("starting %s: %v", chromiumPath, err)
	}

	// Collect console errors and CSP violations while the test runs.
	var consoleMu sync.Mutex
	var consoleErrs []string
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.IsException() || m.Type == "error" {
				consoleMu.Lock()
				consoleErrs = append(consoleErrs, m.String())
				consoleMu.Unlock()
			}
		}
	}()

	tctx, tcancel := context.WithTimeout(ctx, 30*time.Second)
	defer tcancel()
	shot := func(name string) []byte {
		t.Helper()
		png, err := chromedp.Run(tctx, chromedp.FullScreenshot(100)) // quality 100: PNG
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		path := filepath.Join(artifacts, name)
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", path)
		return png
	}
	defer func() {
		if t.Failed() && tctx.Err() == nil {
			shot("status-failure.png")
		}
	}()
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("%s: timed out", what)
			}
			t.Fatalf("%s: %v", what, err)
		}
	}

	// Through basic_auth: the header goes with every request of the tab,
	// the page's fetches included.
	_, err := chromedp.Call(tctx, network.Enable, network.EnableParams{})
	must("enabling the network domain", err)
	_, err = chromedp.Call(tctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{
		Headers: network.Headers{"Authorization": e2e.BasicAuth(statusUser, statusPass)},
	})
	must("setting the Authorization header", err)

	flakyRow := `tr[data-job-id="` + flaky.ID + `"]`
	poisonRow := `tr[data-job-id="` + poison.ID + `"]`
	must("loading the page red, with both dead letters", chromedp.Do(tctx,
		chromedp.EmulateViewport(1280, 900),
		chromedp.Navigate(e2e.SiteAddr+"/status"),
		chromedp.WaitVisible(chromedp.CSS(`#overall[data-status="red"]`)),
		chromedp.WaitVisible(chromedp.CSS(`article[data-upstream="craft"][data-status="red"]`)),
		chromedp.WaitVisible(chromedp.CSS(flakyRow+` button.retry`)),
		chromedp.WaitVisible(chromedp.CSS(poisonRow)),
	))
	card, err := chromedp.Run(tctx, chromedp.Text(chromedp.CSS(`article[data-upstream="craft"]`)))
	must("reading the upstream card", err)
	if !strings.Contains(card, "Failing") || !strings.Contains(card, "circuit breaker open") {
		t.Fatalf("upstream card does not say why it is red: %q", card)
	}
	overall, err := chromedp.Run(tctx, chromedp.Text(chromedp.ID("overall")))
	must("reading the overall status", err)
	if overall != "Failing" {
		t.Fatalf("overall status reads %q, want Failing", overall)
	}
	desktop := shot("status-desktop.png")

	// Retry the dead letter that will succeed: its row goes, the
	// poisoned one stays.
	must("retrying the dead letter", chromedp.Do(tctx,
		chromedp.Click(chromedp.CSS(flakyRow+` button.retry`)),
		chromedp.WaitNotPresent(chromedp.CSS(flakyRow)),
		chromedp.WaitVisible(chromedp.CSS(poisonRow)),
	))
	msg, err := chromedp.Run(tctx, chromedp.Text(chromedp.ID("action-msg")))
	must("reading the action message", err)
	if !strings.Contains(msg, flaky.ID) || !strings.Contains(msg, "queued to run now") {
		t.Fatalf("action message %q", msg)
	}
	e2e.WaitJobState(g, flaky.ID, jobs.StateDone)
	if n := testJobRuns(prefix + "flaky"); n != 2 {
		t.Fatalf("the retried job ran %d times, want 2", n)
	}
	shot("status-after-retry.png")

	// A phone: no horizontal scrolling, the Retry button still there.
	must("switching to a phone viewport", chromedp.Do(tctx,
		chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateScale(2)),
		chromedp.WaitVisible(chromedp.CSS(poisonRow+` button.retry`)),
	))
	fits, err := chromedp.Run(tctx, chromedp.Poll[bool](
		`window.innerWidth <= 400 && document.documentElement.scrollWidth <= window.innerWidth`,
		chromedp.WithPollingTimeout(5*time.Second)))
	if err != nil || !fits {
		width, _ := chromedp.Run(tctx, chromedp.Evaluate[int](`document.documentElement.scrollWidth`))
		shot("status-phone-overflow.png")
		t.Fatalf("page overflows a 390px phone viewport (scrollWidth %d): %v", width, err)
	}
	shot("status-phone.png")
	// What on-call sees first on a phone.
	must("scrolling to the top", chromedp.Do(tctx, chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`)))
	first, err := chromedp.Run(tctx, chromedp.CaptureScreenshot())
	must("screenshot of the phone's first screen", err)
	must("saving the phone's first screen", os.WriteFile(filepath.Join(artifacts, "status-phone-first-screen.png"), first, 0o644))

	consoleMu.Lock()
	errs := append([]string(nil), consoleErrs...)
	consoleMu.Unlock()
	if len(errs) > 0 {
		t.Fatalf("the page logged errors (CSP violations or exceptions):\n%s", strings.Join(errs, "\n"))
	}

	if os.Getenv("UPDATE_SCREENSHOT") == "1" {
		path := filepath.Join("testdata", "status", "screenshot.png")
		if err := os.WriteFile(path, desktop, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("updated %s", path)
	}
}
