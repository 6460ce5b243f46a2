package caddymodule

import (
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
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// The e2e tests drive a real in-process Caddy (caddytest) in front of real
// upstream servers on 127.0.0.1 and a real bbolt file in a temp dir. The
// admin, HTTP and HTTPS ports are free ports picked once per test process
// (TestMain), so two test processes (worktrees, -count runs) never collide.

var (
	adminPort, httpPort, httpsPort int
	// adminAddr is the admin endpoint's host:port.
	adminAddr string
	// siteAddr is the base URL of the test site.
	siteAddr string
	// siteHost is the site's host:port, as it appears in cache keys.
	siteHost string
)

func TestMain(m *testing.M) {
	ports, err := freePorts(3)
	if err != nil {
		fmt.Fprintln(os.Stderr, "picking free ports:", err)
		os.Exit(1)
	}
	adminPort, httpPort, httpsPort = ports[0], ports[1], ports[2]
	adminAddr = fmt.Sprintf("localhost:%d", adminPort)
	siteHost = fmt.Sprintf("localhost:%d", httpPort)
	siteAddr = "http://" + siteHost
	caddytest.Default.AdminPort = adminPort
	os.Exit(m.Run())
}

// freePorts asks the kernel for n distinct free loopback ports.
func freePorts(n int) ([]int, error) {
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

// globalPorts is the start of every test config's global options block.
func globalPorts() string {
	return fmt.Sprintf("\tadmin %s\n\thttp_port %d\n\thttps_port %d\n", adminAddr, httpPort, httpsPort)
}

// testOrigin is a real HTTP upstream on 127.0.0.1 whose behaviour a test
// sets per path.
type testOrigin struct {
	t        *testing.T
	ln       net.Listener
	srv      *http.Server
	mu       sync.Mutex
	handlers map[string]http.HandlerFunc
	fallback http.HandlerFunc
	hits     map[string]int
	total    atomic.Int64
}

func newTestOrigin(t *testing.T) *testOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &testOrigin{t: t, ln: ln, handlers: map[string]http.HandlerFunc{}, hits: map[string]int{}}
	o.srv = &http.Server{Handler: o, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = o.srv.Serve(ln) }()
	t.Cleanup(func() { _ = o.srv.Close() })
	return o
}

func (o *testOrigin) addr() string { return o.ln.Addr().String() }

func (o *testOrigin) handle(path string, fn http.HandlerFunc) {
	o.mu.Lock()
	o.handlers[path] = fn
	o.mu.Unlock()
}

func (o *testOrigin) count(path string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.hits[path]
}

// stop closes the origin's listener: connections are refused from now on.
func (o *testOrigin) stop() { _ = o.srv.Close() }

func (o *testOrigin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.total.Add(1)
	o.mu.Lock()
	o.hits[r.URL.Path]++
	fn := o.handlers[r.URL.Path]
	if fn == nil {
		fn = o.fallback
	}
	o.mu.Unlock()
	if fn == nil {
		fn = pageHandler("default page", "page")
	}
	fn(w, r)
}

// pageHandler serves an HTML page with cache tags and a body long enough
// to be compressed.
func pageHandler(text string, tags string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if tags != "" {
			w.Header().Set("Cache-Tag", tags)
		}
		_, _ = io.WriteString(w, htmlPage(text))
	}
}

func htmlPage(text string) string {
	return "<!doctype html><html><body><h1>" + text + "</h1>" + strings.Repeat("<p>Lorem ipsum dolor sit amet.</p>", 40) + "</body></html>"
}

// gateway is one craftedge configuration under test.
type gateway struct {
	t       *testing.T
	tester  *caddytest.Tester
	origin  *testOrigin
	storage string
	client  *http.Client
}

type gatewayOptions struct {
	handlerExtra string // extra subdirectives inside craftedge { }
	globalExtra  string // extra lines inside the global craftedge { }
	storage      string // bbolt path; default a new temp file
	siteExtra    string // directives in the site before the craftedge handler
	serverExtra  string // global options outside the craftedge block (e.g. servers { ... })
}

func caddyfileFor(o *testOrigin, opts gatewayOptions) string {
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
`, globalPorts(), opts.serverExtra, opts.storage, opts.globalExtra, siteAddr, opts.siteExtra, opts.handlerExtra, o.addr())
}

func startGateway(t *testing.T, o *testOrigin, opts gatewayOptions) *gateway {
	t.Helper()
	if opts.storage == "" {
		opts.storage = filepath.Join(t.TempDir(), "craftedge.db")
	}
	clockOffset.Store(0)
	t.Cleanup(func() { clockOffset.Store(0) })
	tester := caddytest.NewTester(t)
	tester.InitServer(caddyfileFor(o, opts), "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
	g := &gateway{
		t: t, tester: tester, origin: o, storage: opts.storage,
		client: &http.Client{
			Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 64},
			Timeout:   10 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
	}
	t.Cleanup(func() { stopGateway(t) })
	return g
}

// reload applies a new config to the running Caddy (caddy reload).
func (g *gateway) reload(opts gatewayOptions) {
	g.t.Helper()
	if opts.storage == "" {
		opts.storage = g.storage
	}
	g.tester.InitServer(caddyfileFor(g.origin, opts), "caddyfile")
	if g.t.Failed() {
		g.t.FailNow()
	}
}

// restart unloads craftedge completely (its memory tier is destroyed and
// the bbolt file closed), then loads the config again on the same file.
func (g *gateway) restart(opts gatewayOptions) {
	g.t.Helper()
	stopGateway(g.t)
	if currentApp.Load() != nil {
		g.t.Fatal("craftedge app still registered after unloading it")
	}
	g.reload(opts)
}

// stopGateway loads a config without craftedge, releasing its state.
func stopGateway(t testing.TB) {
	tester := caddytest.NewTester(t)
	tester.InitServer("{\n"+globalPorts()+"\tgrace_period 1ns\n\tskip_install_trust\n}\n", "caddyfile")
}

type response struct {
	status int
	header http.Header
	body   string
}

func (g *gateway) do(method, path string, headers map[string]string, body string) response {
	g.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, siteAddr+path, rd)
	if err != nil {
		g.t.Fatal(err)
	}
	for k, v := range headers {
		if strings.EqualFold(k, "Host") {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := g.client.Do(req)
	if err != nil {
		g.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		g.t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func (g *gateway) get(path string, headers ...string) response {
	g.t.Helper()
	h := map[string]string{}
	for i := 0; i+1 < len(headers); i += 2 {
		h[headers[i]] = headers[i+1]
	}
	return g.do(http.MethodGet, path, h, "")
}

// admin calls craftedge's admin API.
func (g *gateway) admin(method, path, body string) response {
	g.t.Helper()
	req, err := http.NewRequest(method, "http://"+adminAddr+path, strings.NewReader(body))
	if err != nil {
		g.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		g.t.Fatalf("admin %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// flushSnapshots waits for the write-behind queue to reach the disk.
func (g *gateway) flushSnapshots() {
	g.t.Helper()
	app := currentApp.Load()
	if app == nil {
		g.t.Fatal("no running craftedge app")
	}
	if err := app.store.Flush(); err != nil {
		g.t.Fatal(err)
	}
}

// advance moves the cache's clock forward.
func advance(d time.Duration) { clockOffset.Add(int64(d)) }

func wantStatus(t *testing.T, r response, code int) {
	t.Helper()
	if r.status != code {
		t.Fatalf("status = %d, want %d; Cache-Status %q; body %.200q", r.status, code, r.header.Get("Cache-Status"), r.body)
	}
}

func wantCacheStatus(t *testing.T, r response, want string) {
	t.Helper()
	if got := r.header.Get("Cache-Status"); got != want {
		t.Fatalf("Cache-Status = %q, want %q (status %d)", got, want, r.status)
	}
}

func wantCacheStatusPrefix(t *testing.T, r response, want string) {
	t.Helper()
	if got := r.header.Get("Cache-Status"); !strings.HasPrefix(got, want) {
		t.Fatalf("Cache-Status = %q, want prefix %q (status %d)", got, want, r.status)
	}
}

func gunzip(t *testing.T, s string) string {
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

func unzstd(t *testing.T, s string) string {
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

// waitFor polls a readiness condition (not a timing assertion): it fails
// the test if cond is still false after a generous deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func gzipString(t *testing.T, s string) string {
	t.Helper()
	var b strings.Builder
	zw := gzip.NewWriter(&b)
	_, _ = zw.Write([]byte(s))
	_ = zw.Close()
	return b.String()
}

func jsonQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func ioCopy(dst io.Writer, r *http.Response) (int64, error) { return io.Copy(dst, r.Body) }
