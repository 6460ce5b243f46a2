// Package e2e is the one harness of craftedge's end-to-end tests: it starts
// a real in-process Caddy (caddytest) in front of real upstream servers on
// 127.0.0.1 and a real bbolt file, and moves the shared test clock. Every
// module package's tests use it; it imports no craftedge module (the core's
// own tests use it), so it reaches the running app through Seams.
package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/craftedge/craftedge/caddymodule/internal/clock"
	"github.com/craftedge/craftedge/jobs"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// The e2e tests drive a real in-process Caddy (caddytest) in front of real
// upstream servers on 127.0.0.1 and a real bbolt file in a temp dir. The
// admin, HTTP and HTTPS ports are free ports picked once per test process
// (Main), so two test processes (worktrees, -count runs) never collide.

var (
	adminPort, httpPort, httpsPort int
	// AdminAddr is the admin endpoint's host:port.
	AdminAddr string
	// SiteAddr is the base URL of the test site.
	SiteAddr string
	// SiteHost is the site's host:port, as it appears in cache keys.
	SiteHost string
)

// Seams reach into the running craftedge app without the harness
// importing the core (the core's own tests use the harness).
type Seams struct {
	// Running reports whether a craftedge app is loaded.
	Running func() bool
	// FlushSnapshots waits for the write-behind queue to reach the disk.
	FlushSnapshots func() error
}

var seams Seams

// Main picks the ports of the test process, then runs its tests.
func Main(m *testing.M, s Seams) {
	seams = s
	ports, err := FreePorts(3)
	if err != nil {
		fmt.Fprintln(os.Stderr, "picking free ports:", err)
		os.Exit(1)
	}
	adminPort, httpPort, httpsPort = ports[0], ports[1], ports[2]
	AdminAddr = fmt.Sprintf("localhost:%d", adminPort)
	SiteHost = fmt.Sprintf("localhost:%d", httpPort)
	SiteAddr = "http://" + SiteHost
	caddytest.Default.AdminPort = adminPort
	// A config load stops the previous one (its servers, bbolt files,
	// background work): on a loaded 2-core machine that has taken more
	// than caddytest's 5s. It bounds a wait, not a measurement.
	caddytest.Default.LoadRequestTimeout = 30 * time.Second
	os.Exit(m.Run())
}

// FreePorts asks the kernel for n distinct free loopback ports.
func FreePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// GlobalPorts is the start of every test config's global options block.
func GlobalPorts() string {
	return fmt.Sprintf("\tadmin %s\n\thttp_port %d\n\thttps_port %d\n", AdminAddr, httpPort, httpsPort)
}

// Origin is a real HTTP upstream on 127.0.0.1 whose behaviour a test
// sets per path.
type Origin struct {
	t        *testing.T
	ln       net.Listener
	srv      *http.Server
	mu       sync.Mutex
	handlers map[string]http.HandlerFunc
	Fallback http.HandlerFunc
	hits     map[string]int
	Total    atomic.Int64
}

func NewOrigin(t *testing.T) *Origin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &Origin{t: t, ln: ln, handlers: map[string]http.HandlerFunc{}, hits: map[string]int{}}
	o.srv = &http.Server{Handler: o, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = o.srv.Serve(ln) }()
	t.Cleanup(func() { _ = o.srv.Close() })
	return o
}

func (o *Origin) Addr() string { return o.ln.Addr().String() }

func (o *Origin) Handle(path string, fn http.HandlerFunc) {
	o.mu.Lock()
	o.handlers[path] = fn
	o.mu.Unlock()
}

func (o *Origin) Count(path string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.hits[path]
}

// Stop closes the origin's listener: connections are refused from now on.
func (o *Origin) Stop() { _ = o.srv.Close() }

func (o *Origin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.Total.Add(1)
	o.mu.Lock()
	o.hits[r.URL.Path]++
	fn := o.handlers[r.URL.Path]
	if fn == nil {
		fn = o.Fallback
	}
	o.mu.Unlock()
	if fn == nil {
		fn = PageHandler("default page", "page")
	}
	fn(w, r)
}

// PageHandler serves an HTML page with cache tags and a body long enough
// to be compressed.
func PageHandler(text string, tags string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if tags != "" {
			w.Header().Set("Cache-Tag", tags)
		}
		_, _ = io.WriteString(w, HTMLPage(text))
	}
}

func HTMLPage(text string) string {
	return "<!doctype html><html><body><h1>" + text + "</h1>" + strings.Repeat("<p>Lorem ipsum dolor sit amet.</p>", 40) + "</body></html>"
}

// Gateway is one craftedge configuration under test.
type Gateway struct {
	T       *testing.T
	Tester  *caddytest.Tester
	Origin  *Origin
	Storage string
	Client  *http.Client
}

type Options struct {
	HandlerExtra string // extra subdirectives inside craftedge { }
	GlobalExtra  string // extra lines inside the global craftedge { }
	Storage      string // bbolt path; default a new temp file
	SiteExtra    string // directives in the site before the craftedge handler
	ServerExtra  string // global options outside the craftedge block (e.g. servers { ... })
}

func CaddyfileFor(o *Origin, opts Options) string {
	return fmt.Sprintf(`{
%s	grace_period 1ns
	skip_install_trust
	%s
	craftedge {
		storage %s
		memory 16MiB
		%s
	}
}
%s {
	%s
	craftedge {
		upstream craft
		ttl 1m
		stale 1h
		timeout 2s
		breaker {
			failures 3
			cooldown 30s
		}
		%s
	}
	reverse_proxy %s
}
`, GlobalPorts(), opts.ServerExtra, opts.Storage, opts.GlobalExtra, SiteAddr, opts.SiteExtra, opts.HandlerExtra, o.Addr())
}

func StartGateway(t *testing.T, o *Origin, opts Options) *Gateway {
	t.Helper()
	if opts.Storage == "" {
		opts.Storage = filepath.Join(t.TempDir(), "craftedge.db")
	}
	return StartConfig(t, o, CaddyfileFor(o, opts), opts.Storage)
}

// StartConfig starts Caddy with a complete Caddyfile (a test's own site
// layout) in front of o (nil when the config names no origin of the test),
// storage being the bbolt file the config names. Like StartGateway, it
// resets the clock before and after the test and unloads the config when
// the test ends. Its client neither decompresses nor follows redirects.
func StartConfig(t *testing.T, o *Origin, caddyfile, storage string) *Gateway {
	t.Helper()
	clock.Reset()
	t.Cleanup(clock.Reset)
	tester := caddytest.NewTester(t)
	tester.InitServer(caddyfile, "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
	g := &Gateway{
		T: t, Tester: tester, Origin: o, Storage: storage,
		Client: &http.Client{
			Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 64},
			Timeout:   10 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
	}
	t.Cleanup(func() { StopGateway(t) })
	return g
}

// Reload applies a new config to the running Caddy (caddy Reload).
func (g *Gateway) Reload(opts Options) {
	g.T.Helper()
	if opts.Storage == "" {
		opts.Storage = g.Storage
	}
	g.Tester.InitServer(CaddyfileFor(g.Origin, opts), "caddyfile")
	if g.T.Failed() {
		g.T.FailNow()
	}
}

// Restart unloads craftedge completely (its memory tier is destroyed and
// the bbolt file closed), then loads the config again on the same file.
func (g *Gateway) Restart(opts Options) {
	g.T.Helper()
	StopGateway(g.T)
	if seams.Running != nil && seams.Running() {
		g.T.Fatal("craftedge app still registered after unloading it")
	}
	g.Reload(opts)
}

// StopGateway loads a config without craftedge, releasing its state.
func StopGateway(t testing.TB) {
	tester := caddytest.NewTester(t)
	tester.InitServer("{\n"+GlobalPorts()+"\tgrace_period 1ns\n\tskip_install_trust\n}\n", "caddyfile")
}

type Response struct {
	Status int
	Header http.Header
	Body   string
}

func (g *Gateway) Do(method, path string, headers map[string]string, body string) Response {
	g.T.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, SiteAddr+path, rd)
	if err != nil {
		g.T.Fatal(err)
	}
	for k, v := range headers {
		if strings.EqualFold(k, "Host") {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := g.Client.Do(req)
	if err != nil {
		g.T.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		g.T.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}
}

func (g *Gateway) Get(path string, headers ...string) Response {
	g.T.Helper()
	h := map[string]string{}
	for i := 0; i+1 < len(headers); i += 2 {
		h[headers[i]] = headers[i+1]
	}
	return g.Do(http.MethodGet, path, h, "")
}

// Admin calls craftedge's Admin API.
func (g *Gateway) Admin(method, path, body string) Response {
	g.T.Helper()
	req, err := http.NewRequest(method, "http://"+AdminAddr+path, strings.NewReader(body))
	if err != nil {
		g.T.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		g.T.Fatalf("admin %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}
}

// FlushSnapshots waits for the write-behind queue to reach the disk.
func (g *Gateway) FlushSnapshots() {
	g.T.Helper()
	if seams.FlushSnapshots == nil {
		g.T.Fatal("e2e: Main was given no FlushSnapshots seam")
	}
	if err := seams.FlushSnapshots(); err != nil {
		g.T.Fatal(err)
	}
}

// Advance moves the clock of every craftedge module forward.
func Advance(d time.Duration) { clock.Advance(d) }

// ResetClock puts the clock of every craftedge module back to the wall clock.
func ResetClock() { clock.Reset() }

func WantStatus(t *testing.T, r Response, code int) {
	t.Helper()
	if r.Status != code {
		t.Fatalf("status = %d, want %d; Cache-Status %q; body %.200q", r.Status, code, r.Header.Get("Cache-Status"), r.Body)
	}
}

func WantCacheStatus(t *testing.T, r Response, want string) {
	t.Helper()
	if got := r.Header.Get("Cache-Status"); got != want {
		t.Fatalf("Cache-Status = %q, want %q (status %d)", got, want, r.Status)
	}
}

func WantCacheStatusPrefix(t *testing.T, r Response, want string) {
	t.Helper()
	if got := r.Header.Get("Cache-Status"); !strings.HasPrefix(got, want) {
		t.Fatalf("Cache-Status = %q, want prefix %q (status %d)", got, want, r.Status)
	}
}

func Gunzip(t *testing.T, s string) string {
	t.Helper()
	zr, err := gzip.NewReader(strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func Unzstd(t *testing.T, s string) string {
	t.Helper()
	d, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	b, err := d.DecodeAll([]byte(s), nil)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// WaitFor polls a readiness condition (not a timing assertion): it fails
// the test if cond is still false after a generous deadline.
func WaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func GzipString(t *testing.T, s string) string {
	t.Helper()
	var b strings.Builder
	zw := gzip.NewWriter(&b)
	_, _ = zw.Write([]byte(s))
	_ = zw.Close()
	return b.String()
}

func JSONQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func CopyBody(dst io.Writer, r *http.Response) (int64, error) { return io.Copy(dst, r.Body) }

// BoomPaths are the paths HandleBoom serves: enough distinct paths to open
// a circuit breaker (min_paths).
var BoomPaths = []string{"/boom", "/boom/2", "/boom/3"}

// HandleBoom serves fn on every BoomPaths path.
func HandleBoom(o *Origin, fn http.HandlerFunc) {
	for _, p := range BoomPaths {
		o.Handle(p, fn)
	}
}

// BreakerState is the circuit breaker state of an upstream, as GET
// /craftedge/health reports it.
func BreakerState(g *Gateway, name string) string {
	g.T.Helper()
	r := g.Admin(http.MethodGet, "/craftedge/health", "")
	WantStatus(g.T, r, 200)
	var h struct {
		Upstreams []struct{ Name, Breaker string }
	}
	if err := json.Unmarshal([]byte(r.Body), &h); err != nil {
		g.T.Fatalf("health is not JSON: %v: %s", err, r.Body)
	}
	for _, u := range h.Upstreams {
		if u.Name == name {
			return u.Breaker
		}
	}
	g.T.Fatalf("upstream %q not in health", name)
	return ""
}

// AssertLoadError loads a Caddyfile that must fail with an error containing
// want and naming the Caddyfile line.
func AssertLoadError(t *testing.T, cfg, want string) {
	t.Helper()
	caddytest.AssertLoadError(t, cfg, "caddyfile", want)
	caddytest.AssertLoadError(t, cfg, "caddyfile", "Caddyfile:")
}

// JobByID is a job as GET /craftedge/jobs/<id> shows it.
func JobByID(g *Gateway, id string) jobs.Job {
	g.T.Helper()
	r := g.Admin(http.MethodGet, "/craftedge/jobs/"+id, "")
	WantStatus(g.T, r, 200)
	var j jobs.Job
	if err := json.Unmarshal([]byte(r.Body), &j); err != nil {
		g.T.Fatal(err)
	}
	return j
}

// WaitJobState waits for a job to reach state and returns it.
func WaitJobState(g *Gateway, id string, state jobs.State) jobs.Job {
	g.T.Helper()
	var j jobs.Job
	WaitFor(g.T, "job "+id+" to be "+string(state), func() bool {
		j = JobByID(g, id)
		return j.State == state
	})
	return j
}

// BasicAuth is the Authorization header value of HTTP basic authentication.
func BasicAuth(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}
