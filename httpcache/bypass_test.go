package httpcache

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func newReq(method, target string, headers ...string) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Add(headers[i], headers[i+1])
	}
	return r
}

func mustCompileBypass(t testing.TB, b BypassRules) *BypassRules {
	t.Helper()
	if err := b.Compile(); err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return &b
}

func TestBypassCheck(t *testing.T) {
	rules := BypassRules{
		Paths:       []string{"/shop/cart*", "/account"},
		Cookies:     []string{"cart_*", "personalized"},
		Query:       []string{"nocache", "preview_*"},
		Headers:     []string{"x-no-cache"},
		GraphQLPath: "/api",
	}
	custom := BypassRules{CPTrigger: "/Backend", ActionTrigger: "/Do"}
	for _, b := range []*BypassRules{&rules, &custom} {
		if err := b.Compile(); err != nil {
			t.Fatalf("Compile: %v", err)
		}
	}
	tests := []struct {
		name  string
		rules *BypassRules
		req   *http.Request
		want  string
	}{
		{"plain get", &rules, newReq("GET", "/blog/post?page=2&sort=asc", "Cookie", "_ga=GA1.2; CRAFT_CSRF_TOKEN=abc"), ""},
		{"head", &rules, newReq("HEAD", "/"), ""},
		{"post", &rules, newReq("POST", "/contact"), ReasonMethod},
		{"put", &rules, newReq("PUT", "/"), ReasonMethod},
		{"delete graphql", &rules, newReq("DELETE", "/api"), ReasonMethod},
		{"post graphql", &rules, newReq("POST", "/api"), ""},
		{"post graphql subpath", &rules, newReq("POST", "/api/x"), ReasonMethod},
		{"graphql authorization", &rules, newReq("POST", "/api", "Authorization", "Bearer x"), ""},
		{"graphql get authorization", &rules, newReq("GET", "/api", "Authorization", "Bearer x"), ""},
		{"custom action trigger", &custom, newReq("GET", "/do/users/session-info"), ReasonAction},
		{"custom action trigger case", &custom, newReq("GET", "/DO"), ReasonAction},
		{"custom action trigger after base path", &custom, newReq("GET", "/de/do/x"), ReasonAction},
		{"custom action trigger in p", &custom, newReq("GET", "/index.php?p=do/x"), ReasonAction},
		{"default trigger is a page then", &custom, newReq("GET", "/actions/x"), ""},
		{"action param whatever the trigger", &custom, newReq("GET", "/?action=users/logout"), ReasonAction},
		{"special path whatever the trigger", &custom, newReq("GET", "/logout"), ReasonAction},
		{"default action trigger", &rules, newReq("GET", "/actions/x"), ReasonAction},
		{"cp root", &rules, newReq("GET", "/admin"), ReasonCP},
		{"cp sub", &rules, newReq("GET", "/admin/entries"), ReasonCP},
		{"cp case", &rules, newReq("GET", "/ADMIN/login"), ReasonCP},
		{"cp double slash", &rules, newReq("GET", "//admin"), ReasonCP},
		{"cp trailing slash", &rules, newReq("GET", "/admin/"), ReasonCP},
		{"cp escaped", &rules, newReq("GET", "/%61dmin/x"), ReasonCP},
		{"cp path info", &rules, newReq("GET", "/index.php/admin/x"), ReasonCP},
		{"not cp prefix", &rules, newReq("GET", "/administrators"), ""},
		// A site whose base URL is /blog/ has its CP at /blog/admin.
		{"cp under a site base path", &rules, newReq("GET", "/blog/admin"), "cp"},
		{"not cp deeper", &rules, newReq("GET", "/blog/posts/admin"), ""},
		{"action under a site base path", &rules, newReq("GET", "/de/actions/users/session-info"), "action"},
		{"action via p under a site base path", &rules, newReq("GET", "/?p=de/actions/users/session-info"), "action"},
		{"cp via p under a site base path", &rules, newReq("GET", "/?p=de/admin/entries"), "cp"},
		{"collapsed slashes", &rules, newReq("GET", "/de//actions/x"), "action"},
		{"logout path", &rules, newReq("GET", "/logout"), "action"},
		{"verifyemail path", &rules, newReq("GET", "/verifyemail?id=1&code=abc"), "action"},
		{"setpassword under a site", &rules, newReq("GET", "/de/setpassword/"), "action"},
		{"logout via p", &rules, newReq("GET", "/?p=logout"), "action"},
		{"not special deeper", &rules, newReq("GET", "/blog/posts/logout"), ""},
		{"graphql mutation in query on any path", &rules, newReq("GET", "/api/?query=mutation%7Bx%7D"), "graphql-mutation"},
		{"graphql mutation via p", &rules, newReq("GET", "/?p=api&query=mutation%7Bx%7D"), "graphql-mutation"},
		{"plain search query", &rules, newReq("GET", "/search?query=shoes"), ""},
		{"cp p param", &rules, newReq("GET", "/index.php?p=admin/entries"), ReasonCP},
		{"cp p param slash", &rules, newReq("GET", "/index.php?p=/admin"), ReasonCP},
		{"cp p param escaped", &rules, newReq("GET", "/index.php?p=%61dmin%2Fx"), ReasonCP},
		{"cp p param any path", &rules, newReq("GET", "/?x=1&p=Admin"), ReasonCP},
		{"p param other", &rules, newReq("GET", "/index.php?p=blog"), ""},
		{"custom cp", &custom, newReq("GET", "/backend/x"), ReasonCP},
		{"custom cp default not cp", &custom, newReq("GET", "/admin/x"), ""},
		{"custom cp p", &custom, newReq("GET", "/index.php?p=backend"), ReasonCP},
		{"uncompiled default cp", &BypassRules{}, newReq("GET", "/admin"), ReasonCP},
		{"action path", &rules, newReq("GET", "/actions/users/login"), ReasonAction},
		{"action path root", &rules, newReq("GET", "/actions"), ReasonAction},
		{"action index.php", &rules, newReq("GET", "/index.php/actions/x/y"), ReasonAction},
		{"action param", &rules, newReq("GET", "/?action=users/logout"), ReasonAction},
		{"action param array", &rules, newReq("GET", "/?action[]=x"), ReasonAction},
		{"action p param", &rules, newReq("GET", "/index.php?p=actions/x"), ReasonAction},
		{"not action", &rules, newReq("GET", "/actionsfoo"), ""},
		{"token param", &rules, newReq("GET", "/?token=abc"), ReasonToken},
		{"token param no value", &rules, newReq("GET", "/?token"), ReasonToken},
		{"site token", &rules, newReq("GET", "/?a=1&siteToken=abc"), ReasonToken},
		{"preview param", &rules, newReq("GET", "/?x-craft-preview=1"), ReasonToken},
		{"live preview param", &rules, newReq("GET", "/?x-craft-live-preview=1"), ReasonToken},
		{"escaped token name", &rules, newReq("GET", "/?%74oken=1"), ReasonToken},
		{"token header", &rules, newReq("GET", "/", "X-Craft-Token", "t"), ReasonToken},
		{"site token header", &rules, newReq("GET", "/", "X-Craft-Site-Token", "t"), ReasonToken},
		{"preview token header", &rules, newReq("GET", "/", "X-Craft-Preview-Token", "t"), ReasonToken},
		{"preview header", &rules, newReq("GET", "/", "X-Craft-Preview", "1"), ReasonPreview},
		{"live preview header", &rules, newReq("GET", "/", "X-Craft-Live-Preview", ""), ReasonPreview},
		{"session", &rules, newReq("GET", "/", "Cookie", "a=1; CraftSessionId=abc"), ReasonSession},
		{"session namespaced", &rules, newReq("GET", "/", "Cookie", "site1CraftSessionId=abc"), ReasonSession},
		{"session second line", &rules, newReq("GET", "/", "Cookie", "a=1", "Cookie", "b=2;CraftSessionId=x"), ReasonSession},
		{"identity", &rules, newReq("GET", "/", "Cookie", "0123456789abcdef0123456789abcdef_identity=x"), ReasonIdentity},
		{"identity any", &rules, newReq("GET", "/", "Cookie", "foo_identity=x"), ReasonIdentity},
		{"identity not suffix", &rules, newReq("GET", "/", "Cookie", "foo_identity_x=1"), ""},
		{"authorization", &rules, newReq("GET", "/", "Authorization", "Basic x"), ReasonAuthorization},
		{"extra path exact", &rules, newReq("GET", "/account"), ReasonPath},
		{"extra path exact sub", &rules, newReq("GET", "/account/x"), ""},
		{"extra path prefix", &rules, newReq("GET", "/shop/cart/items"), ReasonPath},
		{"extra path prefix case", &rules, newReq("GET", "/Shop/Cart"), ReasonPath},
		{"extra cookie prefix", &rules, newReq("GET", "/", "Cookie", "x=1; cart_id=9"), ReasonCookie},
		{"extra cookie exact", &rules, newReq("GET", "/", "Cookie", "personalized=1"), ReasonCookie},
		{"extra cookie case-sensitive", &rules, newReq("GET", "/", "Cookie", "Personalized=1"), ""},
		{"extra query", &rules, newReq("GET", "/?nocache"), ReasonQuery},
		{"extra query prefix", &rules, newReq("GET", "/?a=1&preview_mode=1"), ReasonQuery},
		{"extra header", &rules, newReq("GET", "/", "X-No-Cache", "1"), ReasonHeader},
		{"precedence method", &rules, newReq("POST", "/admin"), ReasonMethod},
		{"precedence cp over token", &rules, newReq("GET", "/admin?token=1"), ReasonCP},
		{"precedence session over path", &rules, newReq("GET", "/account", "Cookie", "CraftSessionId=1"), ReasonSession},
		{"empty query names", &rules, newReq("GET", "/?=1&&=&a"), ""},
		{"empty cookie pieces", &rules, newReq("GET", "/", "Cookie", ";; =x; a"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.rules.Check(tt.req); got != tt.want {
				t.Errorf("Check(%s %s) = %q, want %q", tt.req.Method, tt.req.URL, got, tt.want)
			}
		})
	}
}

func TestBypassCompile(t *testing.T) {
	tests := []struct {
		name    string
		rules   BypassRules
		wantErr string // substring; "" = no error
		check   func(t *testing.T, b *BypassRules)
	}{
		{name: "defaults", check: func(t *testing.T, b *BypassRules) {
			if b.CPTrigger != "admin" {
				t.Errorf("CPTrigger = %q", b.CPTrigger)
			}
		}},
		{name: "default action trigger", check: func(t *testing.T, b *BypassRules) {
			if b.ActionTrigger != "actions" {
				t.Errorf("ActionTrigger = %q", b.ActionTrigger)
			}
		}},
		{name: "action normalized", rules: BypassRules{ActionTrigger: "/Do"}, check: func(t *testing.T, b *BypassRules) {
			if b.ActionTrigger != "do" {
				t.Errorf("ActionTrigger = %q", b.ActionTrigger)
			}
		}},
		{name: "action slash inside", rules: BypassRules{ActionTrigger: "a/b"}, wantErr: `action trigger "a/b"`},
		{name: "action only slash", rules: BypassRules{ActionTrigger: "/"}, wantErr: `action trigger "/"`},
		{name: "action wildcard", rules: BypassRules{ActionTrigger: "act*"}, wantErr: `action trigger "act*"`},
		{name: "action same as cp", rules: BypassRules{CPTrigger: "admin", ActionTrigger: "Admin"}, wantErr: "the same as the cp trigger"},
		{name: "cp normalized", rules: BypassRules{CPTrigger: "/CP"}, check: func(t *testing.T, b *BypassRules) {
			if b.CPTrigger != "cp" {
				t.Errorf("CPTrigger = %q", b.CPTrigger)
			}
		}},
		{name: "headers canonical", rules: BypassRules{Headers: []string{"x-foo-bar"}}, check: func(t *testing.T, b *BypassRules) {
			if b.Headers[0] != "X-Foo-Bar" {
				t.Errorf("Headers = %q", b.Headers)
			}
		}},
		{name: "cp slash inside", rules: BypassRules{CPTrigger: "a/b"}, wantErr: `"a/b"`},
		{name: "cp trailing slash", rules: BypassRules{CPTrigger: "admin/"}, wantErr: `"admin/"`},
		{name: "cp only slash", rules: BypassRules{CPTrigger: "/"}, wantErr: `"/"`},
		{name: "cp space", rules: BypassRules{CPTrigger: "ad min"}, wantErr: "ad min"},
		{name: "graphql relative", rules: BypassRules{GraphQLPath: "api"}, wantErr: `"api"`},
		{name: "graphql query", rules: BypassRules{GraphQLPath: "/api?x"}, wantErr: `"/api?x"`},
		{name: "path empty", rules: BypassRules{Paths: []string{""}}, wantErr: "paths[0]: empty name"},
		{name: "path relative", rules: BypassRules{Paths: []string{"/ok", "shop"}}, wantErr: `paths[1] "shop"`},
		{name: "path star only", rules: BypassRules{Paths: []string{"*"}}, wantErr: `paths[0] "*"`},
		{name: "path inner star", rules: BypassRules{Paths: []string{"/a*/b"}}, wantErr: "only allowed at the end"},
		{name: "cookie empty", rules: BypassRules{Cookies: []string{""}}, wantErr: "cookies[0]: empty name"},
		{name: "cookie invalid", rules: BypassRules{Cookies: []string{"a b"}}, wantErr: `cookies[0] "a b"`},
		{name: "cookie any", rules: BypassRules{Cookies: []string{"*"}}},
		{name: "query empty", rules: BypassRules{Query: []string{""}}, wantErr: "query[0]: empty name"},
		{name: "query invalid", rules: BypassRules{Query: []string{"a=b"}}, wantErr: `query[0] "a=b"`},
		{name: "header empty", rules: BypassRules{Headers: []string{""}}, wantErr: `headers[0] ""`},
		{name: "header invalid", rules: BypassRules{Headers: []string{"X Foo"}}, wantErr: `headers[0] "X Foo"`},
		{name: "all errors joined", rules: BypassRules{CPTrigger: "a/b", Headers: []string{"X Foo"}}, wantErr: `headers[0] "X Foo"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.rules.Compile()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Compile: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("Compile: no error, want %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("Compile error %q does not contain %q", err, tt.wantErr)
			}
			if tt.check != nil {
				tt.check(t, &tt.rules)
			}
		})
	}
}

func TestBypassCompileErrorKeepsState(t *testing.T) {
	b := BypassRules{CPTrigger: "backend"}
	if err := b.Compile(); err != nil {
		t.Fatal(err)
	}
	b.CPTrigger = "a/b"
	if err := b.Compile(); err == nil {
		t.Fatal("want error")
	}
	if got := b.Check(newReq("GET", "/backend")); got != ReasonCP {
		t.Errorf("after failed Compile, Check = %q, want %q", got, ReasonCP)
	}
}

func TestBypassCheckAllocs(t *testing.T) {
	b := mustCompileBypass(t, BypassRules{
		Paths:   []string{"/shop/cart*"},
		Cookies: []string{"cart_*"},
		Query:   []string{"nocache"},
		Headers: []string{"X-No-Cache"},
	})
	r := newReq("GET", "/blog/some-post?page=2&sort=title&utm_source=news",
		"Cookie", "_ga=GA1.2.3; CRAFT_CSRF_TOKEN=abc; theme=dark",
		"Accept-Encoding", "gzip, br")
	if got := b.Check(r); got != "" {
		t.Fatalf("Check = %q, want cacheable", got)
	}
	if n := testing.AllocsPerRun(100, func() { b.Check(r) }); n != 0 {
		t.Errorf("Check allocates %v times, want 0", n)
	}
}

func TestCraftRoute(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"/", ""},
		{"/a/b", "a/b"},
		{"//a", "a"},
		{"/index.php/actions/x", "actions/x"},
		{"/INDEX.PHP//admin", "admin"},
		{"/index.php", "index.php"},
	}
	for _, tt := range tests {
		if got := craftRoute(tt.in); got != tt.want {
			t.Errorf("craftRoute(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestFirstSegmentIs(t *testing.T) {
	tests := []struct {
		route, seg string
		want       bool
	}{
		{"admin", "admin", true},
		{"Admin/x", "admin", true},
		{"admins", "admin", false},
		{"adm", "admin", false},
		{"", "admin", false},
	}
	for _, tt := range tests {
		if got := firstSegmentIs(tt.route, tt.seg); got != tt.want {
			t.Errorf("firstSegmentIs(%q, %q) = %v, want %v", tt.route, tt.seg, got, tt.want)
		}
	}
}

func TestControlPanel(t *testing.T) {
	var b BypassRules
	if err := b.Compile(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		method, url string
		want        bool
	}{
		{"POST", "/admin/entries/blog/12", true},
		{"POST", "/index.php?p=admin/actions/entries/save-entry", true},
		{"POST", "/actions/entries/save-entry", true},
		{"POST", "/?action=entries/save-entry", true},
		{"POST", "/contact", false},
		{"GET", "/blog/post", false},
	} {
		r := httptest.NewRequest(tc.method, tc.url, nil)
		if got := b.ControlPanel(r); got != tc.want {
			t.Errorf("%s %s: ControlPanel = %v, want %v", tc.method, tc.url, got, tc.want)
		}
	}
}
