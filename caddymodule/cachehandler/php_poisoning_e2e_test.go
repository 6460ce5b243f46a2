package cachehandler

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
)

// phpDumpScript renders, as Craft's PHP would read them, the request
// variables a poisoning attack targets: $_GET, $_COOKIE, the raw body and
// the $_SERVER entries Yii reads for routing, method, host and scheme.
const phpDumpScript = `<?php
header('Content-Type: text/html; charset=utf-8');
$server = [];
foreach ($_SERVER as $k => $v) {
    if (str_starts_with($k, 'HTTP_') || in_array($k, ['REQUEST_URI', 'QUERY_STRING', 'REQUEST_METHOD', 'HTTPS', 'CONTENT_TYPE', 'CONTENT_LENGTH'], true)) {
        $server[$k] = $v;
    }
}
echo json_encode(['get' => (object)$_GET, 'post' => (object)$_POST, 'cookie' => (object)$_COOKIE, 'body' => file_get_contents('php://input'), 'server' => (object)$server]);
echo str_repeat("<!-- padding -->", 40);
`

// startPHP runs php-cgi as a FastCGI server on a free loopback port,
// serving root. CI installs php-cgi (.ci/run); elsewhere the test is
// skipped when it is missing.
func startPHP(t *testing.T, root string) string {
	t.Helper()
	bin, err := exec.LookPath("php-cgi")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("php-cgi not installed (.ci/run installs it)")
		}
		t.Skip("php-cgi not installed (apt-get install php-cgi)")
	}
	ports, err := e2e.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	cmd := exec.Command(bin, "-b", addr)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "PHP_FCGI_CHILDREN=2", "PHP_FCGI_MAX_REQUESTS=0")
	// php-cgi forks PHP_FCGI_CHILDREN workers, which outlive a kill of
	// their parent alone (and keep every file the test process had open,
	// a flock(1) lock included): kill the whole process group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() })
	e2e.WaitFor(t, "php-cgi listening", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return addr
}

// startPHPGateway starts craftedge (ttl 1m) in front of php_fastcgi to a
// php-cgi serving phpDumpScript as index.php.
func startPHPGateway(t *testing.T) *e2e.Gateway {
	t.Helper()
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "index.php"), []byte(phpDumpScript), 0o644); err != nil {
		t.Fatal(err)
	}
	php := startPHP(t, root)
	tester := caddytest.NewTester(t)
	tester.InitServer(`{
`+e2e.GlobalPorts()+`	grace_period 1ns
	skip_install_trust
	craftedge {
		storage `+filepath.Join(t.TempDir(), "craftedge.db")+`
		memory 16MiB
	}
}
`+e2e.SiteAddr+` {
	root * `+root+`
	craftedge {
		ttl 1m
	}
	php_fastcgi `+php+`
}
`, "caddyfile")
	t.Cleanup(func() { e2e.StopGateway(t) })
	return &e2e.Gateway{T: t, Tester: tester, Client: &http.Client{}}
}

// phpView is what the PHP script saw.
type phpView struct {
	Get    map[string]any    `json:"get"`
	Post   any               `json:"post"`
	Cookie map[string]any    `json:"cookie"`
	Body   string            `json:"body"`
	Server map[string]string `json:"server"`
}

func parsePHPView(t *testing.T, body string) phpView {
	t.Helper()
	i := strings.Index(body, "<!--")
	if i < 0 {
		t.Fatalf("not the PHP dump: %.300q", body)
	}
	var v phpView
	if err := json.Unmarshal([]byte(body[:i]), &v); err != nil {
		t.Fatalf("PHP dump: %v: %.300q", err, body)
	}
	return v
}

// TestPHPSeesOnlyKeyedRequest runs real PHP behind php_fastcgi: whatever
// an attacker adds to a cacheable request (unkeyed headers Yii honours, a
// GET body, cookies, tracking parameters), PHP sees exactly the keyed
// request, and parameter names PHP normalises bypass as PHP reads them.
func TestPHPSeesOnlyKeyedRequest(t *testing.T) {
	g := startPHPGateway(t)

	attack := map[string]string{
		"X-Rewrite-Url":          "/evil-rewrite",
		"X-Original-Url":         "/evil-original",
		"X-Http-Method-Override": "DELETE",
		"Forwarded":              "host=evil.example",
		"X-Original-Host":        "evil.example",
		"Front-End-Https":        "on",
		"X-Forwarded-Host":       "evil.example",
		"X-Forwarded-Proto":      "https",
		"Cookie":                 "consent=evil",
		"Content-Type":           "application/x-www-form-urlencoded",
	}
	r := g.Do(http.MethodGet, "/blog?b=2&utm_source=evil&a=1", attack, "action=users/logout")
	e2e.WantCacheStatus(t, r, "craftedge; fwd=miss; stored")
	v := parsePHPView(t, r.Body)
	if strings.Contains(r.Body, "evil") || strings.Contains(r.Body, "logout") {
		t.Fatalf("PHP saw the attacker's request: %+v", v)
	}
	if v.Server["REQUEST_URI"] != "/blog?a=1&b=2" || v.Server["QUERY_STRING"] != "a=1&b=2" || v.Server["REQUEST_METHOD"] != "GET" {
		t.Fatalf("PHP saw REQUEST_URI %q QUERY_STRING %q method %q, want the keyed URL", v.Server["REQUEST_URI"], v.Server["QUERY_STRING"], v.Server["REQUEST_METHOD"])
	}
	if len(v.Cookie) != 0 || v.Body != "" {
		t.Fatalf("PHP saw cookies %v body %q", v.Cookie, v.Body)
	}
	victim := g.Get("/blog?a=1&b=2")
	e2e.WantCacheStatus(t, victim, "craftedge; hit")

	// Names PHP normalises: what PHP registers is what the bypass saw.
	for _, c := range []struct{ query, phpName, reason string }{
		{"%20token=x", "token", "token"},
		{"+token=x", "token", "token"},
		{"%20action=x", "action", "action"},
		{"%20p=admin", "p", "cp"},
		{"%20x-craft-preview=1", "x-craft-preview", "token"},
	} {
		r := g.Get("/page?" + c.query)
		e2e.WantCacheStatus(t, r, "craftedge; fwd=bypass; detail="+c.reason)
		if v := parsePHPView(t, r.Body); v.Get[c.phpName] == nil {
			t.Errorf("?%s: PHP registered %v, want %q", c.query, v.Get, c.phpName)
		}
	}
	for _, c := range []struct{ cookie, phpName string }{
		{"h.identity=1", "h_identity"},
		{"h identity=1", "h_identity"},
	} {
		r := g.Get("/page", "Cookie", c.cookie)
		e2e.WantCacheStatus(t, r, "craftedge; fwd=bypass; detail=identity")
		if v := parsePHPView(t, r.Body); v.Cookie[c.phpName] == nil {
			t.Errorf("cookie %q: PHP registered %v, want %q", c.cookie, v.Cookie, c.phpName)
		}
	}
}
