package httpcache

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Reasons returned by BypassRules.Check. They are short, stable and of low
// cardinality so callers may use them as metric labels.
const (
	// ReasonMethod: the method is neither GET nor HEAD (nor a POST to the
	// GraphQL path).
	ReasonMethod = "method"
	// ReasonCP: a Craft control panel request.
	ReasonCP = "cp"
	// ReasonAction: a Craft controller action request.
	ReasonAction = "action"
	// ReasonToken: a Craft token, site token or preview token is present.
	ReasonToken = "token"
	// ReasonPreview: a Craft (live) preview request.
	ReasonPreview = "preview"
	// ReasonSession: the client has a Craft session cookie.
	ReasonSession = "session"
	// ReasonIdentity: the client has a Craft identity (logged-in) cookie.
	ReasonIdentity = "identity"
	// ReasonAuthorization: the request carries an Authorization header.
	ReasonAuthorization = "authorization"
	// ReasonPath: the path matches a configured bypass path.
	ReasonPath = "path"
	// ReasonCookie: a cookie matches a configured bypass cookie name.
	ReasonCookie = "cookie"
	// ReasonQuery: a query parameter matches a configured bypass name.
	ReasonQuery = "query"
	// ReasonHeader: a configured bypass request header is present.
	ReasonHeader = "header"
	// ReasonGraphQLMutation: a "query" parameter holds a GraphQL mutation
	// or subscription keyword (on any path).
	ReasonGraphQLMutation = "graphql-mutation"
)

// DefaultCPTrigger is Craft's default control panel trigger (the cpTrigger
// general config setting).
const DefaultCPTrigger = "admin"

// DefaultActionTrigger is Craft's default action trigger (the actionTrigger
// general config setting).
const DefaultActionTrigger = "actions"

// BypassRules decides which requests are never served from nor stored in the
// cache. Configure the exported fields, call Compile once, then Check is safe
// for concurrent use. A BypassRules that was never compiled applies only the
// built-in rules, with the default CP trigger.
type BypassRules struct {
	// CPTrigger is Craft's control panel trigger, default "admin": paths
	// "/admin" and "/admin/..." (case-insensitive) bypass, and so does a
	// "p" query parameter starting with it ("index.php?p=admin...").
	CPTrigger string
	// ActionTrigger is Craft's action trigger (the actionTrigger general
	// config setting), default "actions": paths "/actions/..." (also after
	// one site base path segment, case-insensitive) and a "p" query
	// parameter routing there are controller actions and bypass. The same
	// form as CPTrigger. Whatever it is, an "action" query parameter and
	// Craft's login, logout, set-password and verify-email paths bypass too.
	ActionTrigger string
	// Paths are extra path rules: an exact path, or a prefix when ending in
	// "*" (e.g. "/shop/cart*"). Matched case-insensitively, since Craft
	// resolves element URIs case-insensitively.
	Paths []string
	// Cookies are extra cookie names: exact, or a prefix when ending in "*"
	// ("*" alone: any cookie). Case-sensitive, as cookie names are.
	Cookies []string
	// Query are extra query parameter names whose presence bypasses: exact,
	// or a prefix when ending in "*". Case-sensitive, as PHP's are.
	Query []string
	// Headers are extra request header names whose presence bypasses.
	// Compile canonicalizes them.
	Headers []string
	// GraphQLPath, when set, is the path of Craft's GraphQL API: a POST to
	// exactly this path is not bypassed for its method, and Authorization is
	// allowed on it. The caller must then inspect the body
	// (IsGraphQLMutation) and key the response by the Authorization header.
	GraphQLPath string

	cp      string // lower-case CP trigger without its leading slash
	action  string // lower-case action trigger without its leading slash
	paths   matcher
	cookies matcher
	query   matcher
	headers []string // canonical header names
}

// Compile validates and normalizes the rules: it sets the default CP
// trigger, strips the CP trigger's leading slash, canonicalizes header
// names and prepares the matchers. It returns an error naming every bad
// value, and leaves the compiled state unchanged in that case.
func (b *BypassRules) Compile() error {
	var errs []error
	cp, action := DefaultCPTrigger, DefaultActionTrigger
	if b.CPTrigger != "" {
		var err error
		if cp, err = CheckTrigger(b.CPTrigger); err != nil {
			errs = append(errs, fmt.Errorf("cp trigger %w", err))
		}
	}
	if b.ActionTrigger != "" {
		var err error
		if action, err = CheckTrigger(b.ActionTrigger); err != nil {
			errs = append(errs, fmt.Errorf("action trigger %w", err))
		}
	}
	if strings.EqualFold(action, cp) {
		errs = append(errs, fmt.Errorf("action trigger %q: the same as the cp trigger", action))
	}
	if b.GraphQLPath != "" && (!strings.HasPrefix(b.GraphQLPath, "/") || strings.ContainsAny(b.GraphQLPath, "?#* \t")) {
		errs = append(errs, fmt.Errorf("graphql path %q: must be an absolute path without query, fragment, wildcard or spaces", b.GraphQLPath))
	}
	paths, err := newMatcher("paths", b.Paths, true, validPathRule)
	errs = append(errs, err)
	cookies, err := newMatcher("cookies", b.Cookies, false, validCookieRule)
	errs = append(errs, err)
	query, err := newMatcher("query", b.Query, false, validQueryRule)
	errs = append(errs, err)
	headers := make([]string, 0, len(b.Headers))
	for i, h := range b.Headers {
		if !isToken(h) {
			errs = append(errs, fmt.Errorf("headers[%d] %q: not a valid header name", i, h))
			continue
		}
		headers = append(headers, http.CanonicalHeaderKey(h))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("httpcache: invalid bypass rules: %w", err)
	}
	b.CPTrigger = strings.ToLower(cp)
	b.cp = b.CPTrigger
	b.ActionTrigger = strings.ToLower(action)
	b.action = b.ActionTrigger
	b.paths, b.cookies, b.query = paths, cookies, query
	b.Headers, b.headers = headers, headers
	return nil
}

// CheckTrigger validates a Craft trigger (cpTrigger, actionTrigger): one
// path segment of letters, digits and "-_.~", a leading slash allowed. It
// returns the segment without the slash, or an error starting with the
// quoted value.
func CheckTrigger(v string) (string, error) {
	seg := strings.TrimLeft(v, "/")
	switch {
	case seg == "":
		return "", fmt.Errorf("%q: empty after removing the leading slash", v)
	case strings.ContainsAny(seg, "/?#%*") || !isToken(seg):
		return "", fmt.Errorf("%q: must be a single path segment (letters, digits, \"-_.~\")", v)
	}
	return seg, nil
}

// validPathRule checks a Paths rule (without its trailing "*").
func validPathRule(p string) string {
	switch {
	case !strings.HasPrefix(p, "/"):
		return "must start with \"/\""
	case strings.ContainsAny(p, "?# \t"):
		return "must be a path without query, fragment or spaces"
	}
	return ""
}

// validCookieRule checks a Cookies rule (without its trailing "*"); an
// empty base ("*") matches any cookie.
func validCookieRule(c string) string {
	if c != "" && !isToken(c) {
		return "not a valid cookie name"
	}
	return ""
}

// validQueryRule checks a Query rule (without its trailing "*"); an empty
// base ("*") matches any parameter.
func validQueryRule(q string) string {
	if strings.ContainsAny(q, "&=#? \t") {
		return "not a valid query parameter name"
	}
	return ""
}

// Check returns "" when r may be served from and stored in the cache, or a
// Reason* constant saying why it must go to the origin untouched. Built-in
// rules are checked first, in the order of the Reason constants, then the
// configured extras. Tokens, previews, cookies and headers are detected by
// presence only. Check does not read the body: for a POST to GraphQLPath
// the caller must still call IsGraphQLMutation. It does not allocate for
// ordinary requests.
func (b *BypassRules) Check(r *http.Request) string {
	var path, rawQuery string
	if r.URL != nil {
		path, rawQuery = r.URL.Path, r.URL.RawQuery
	}
	graphQL := b.GraphQLPath != "" && path == b.GraphQLPath
	switch r.Method {
	case http.MethodGet, http.MethodHead, "":
	case http.MethodPost:
		if !graphQL {
			return ReasonMethod
		}
	default:
		return ReasonMethod
	}
	cp, action := b.triggers()
	seg := craftRoute(path)
	q := b.scanQuery(rawQuery, cp, action)
	switch {
	case routeHasTrigger(seg, cp) || q&queryCP != 0:
		return ReasonCP
	case routeHasTrigger(seg, action) || isSpecialPath(seg) || q&queryAction != 0:
		return ReasonAction
	case q&queryGraphQLMutation != 0:
		return ReasonGraphQLMutation
	case q&queryToken != 0 || hasAnyHeader(r.Header, "X-Craft-Token", "X-Craft-Site-Token", "X-Craft-Preview-Token"):
		return ReasonToken
	case hasAnyHeader(r.Header, "X-Craft-Preview", "X-Craft-Live-Preview"):
		return ReasonPreview
	}
	c := b.scanCookies(r.Header["Cookie"])
	switch {
	case c&cookieSession != 0:
		return ReasonSession
	case c&cookieIdentity != 0:
		return ReasonIdentity
	case !graphQL && hasHeader(r.Header, "Authorization"):
		return ReasonAuthorization
	case b.paths.match(path):
		return ReasonPath
	case c&cookieExtra != 0:
		return ReasonCookie
	case q&queryExtra != 0:
		return ReasonQuery
	}
	for _, h := range b.headers {
		if hasHeader(r.Header, h) {
			return ReasonHeader
		}
	}
	return ""
}

// triggers returns the compiled CP and action triggers, or Craft's
// defaults for rules that were never compiled.
func (b *BypassRules) triggers() (cp, action string) {
	cp, action = b.cp, b.action
	if cp == "" {
		cp = DefaultCPTrigger
	}
	if action == "" {
		action = DefaultActionTrigger
	}
	return cp, action
}

// craftRoute returns the part of a request path Craft routes on: leading
// slashes removed, a leading "index.php/" (PATH_INFO style URLs) skipped,
// and runs of slashes collapsed, as Craft's Request normalizes its path.
func craftRoute(path string) string {
	path = strings.TrimLeft(path, "/")
	if hasPrefixFold(path, "index.php/") {
		path = strings.TrimLeft(path[len("index.php/"):], "/")
	}
	for strings.Contains(path, "//") {
		path = strings.ReplaceAll(path, "//", "/")
	}
	return path
}

// routeHasTrigger reports whether Craft may read route as the trigger
// (the CP or the action trigger): as its first segment, or as its second,
// after a site's base path ("de/actions/...": Craft strips the site's
// base URL path before looking for its triggers). Over-matching a page
// whose second segment happens to be the trigger only costs a bypass.
func routeHasTrigger(route, trigger string) bool {
	if firstSegmentIs(route, trigger) {
		return true
	}
	if i := strings.IndexByte(route, '/'); i > 0 {
		return firstSegmentIs(route[i+1:], trigger)
	}
	return false
}

// craftSpecialPaths are the site paths Craft routes to users/* actions
// (its loginPath, logoutPath, setPasswordPath and verifyEmailPath
// defaults).
var craftSpecialPaths = []string{"login", "logout", "setpassword", "verifyemail"}

// isSpecialPath reports whether route is one of Craft's special paths,
// alone or after a site's base path segment.
func isSpecialPath(route string) bool {
	route = strings.TrimRight(route, "/")
	if i := strings.IndexByte(route, '/'); i > 0 && strings.IndexByte(route[i+1:], '/') < 0 {
		if isSpecialPath(route[i+1:]) {
			return true
		}
	}
	for _, p := range craftSpecialPaths {
		if equalFold(route, p) {
			return true
		}
	}
	return false
}

// firstSegmentIs reports whether route is seg or starts with seg + "/",
// ignoring ASCII case.
func firstSegmentIs(route, seg string) bool {
	return hasPrefixFold(route, seg) && (len(route) == len(seg) || route[len(seg)] == '/')
}

// hasHeader reports whether h has a value for the canonical name key.
func hasHeader(h http.Header, key string) bool {
	return len(h[key]) > 0
}

// hasAnyHeader reports whether h has a value for any of the canonical names.
func hasAnyHeader(h http.Header, keys ...string) bool {
	for _, k := range keys {
		if hasHeader(h, k) {
			return true
		}
	}
	return false
}

// Flags found by scanQuery.
const (
	queryCP = 1 << iota
	queryAction
	queryToken
	queryExtra
	queryGraphQLMutation
)

// scanQuery scans a raw query string once and reports which bypass-relevant
// parameters it holds. Names are read as PHP registers them (PHPVarName:
// "%20token", "+token" and "token[]" are all "token"); configured names
// match the decoded name or PHP's.
func (b *BypassRules) scanQuery(rawQuery, cp, action string) int {
	flags := 0
	for rawQuery != "" {
		var piece string
		piece, rawQuery, _ = cutByte(rawQuery, '&')
		name, value, _ := cutByte(piece, '=')
		if name == "" {
			continue
		}
		decoded := unescapeQuery(name)
		name = PHPVarName(decoded)
		if b.query.match(decoded) || b.query.match(name) {
			flags |= queryExtra
		}
		switch {
		case equalFold(name, "p"):
			route := craftRoute(unescapeQuery(value))
			if hasPrefixFold(route, cp) || routeHasTrigger(route, cp) {
				flags |= queryCP
			}
			if routeHasTrigger(route, action) || isSpecialPath(route) {
				flags |= queryAction
			}
		case name == "query":
			// Craft's GraphQL API runs a "query" parameter whatever the
			// method, and its route can be reached by many spellings
			// (/api/, //api, ?p=api, index.php/api) or by a site's own
			// route: a document holding an operation keyword is never
			// cached, on any path. A search for the word only costs a
			// bypass.
			if v := unescapeQuery(value); strings.Contains(v, "mutation") || strings.Contains(v, "subscription") {
				flags |= queryGraphQLMutation
			}
		case equalFold(name, "action"):
			flags |= queryAction
		case equalFold(name, "token"), equalFold(name, "siteToken"),
			equalFold(name, "x-craft-preview"), equalFold(name, "x-craft-live-preview"):
			flags |= queryToken
		}
	}
	return flags
}

// Flags found by scanCookies.
const (
	cookieSession = 1 << iota
	cookieIdentity
	cookieExtra
)

// scanCookies scans Cookie header lines once (without r.Cookies) and
// reports which bypass-relevant cookie names they hold.
func (b *BypassRules) scanCookies(lines []string) int {
	flags := 0
	for _, line := range lines {
		for line != "" {
			var piece string
			piece, line, _ = cutByte(line, ';')
			raw, _, _ := cutByte(piece, '=')
			raw = trimOWS(raw)
			if raw == "" {
				continue
			}
			// The name as sent, as PHP 8 registers it, and as older PHP
			// (which percent-decoded names) registered it.
			for _, name := range [3]string{raw, PHPCookieName(raw), PHPCookieName(unescapeQuery(raw))} {
				switch {
				case hasSuffixFold(name, "CraftSessionId"):
					flags |= cookieSession
				case hasSuffixFold(name, "_identity"):
					flags |= cookieIdentity
				}
				if b.cookies.match(name) {
					flags |= cookieExtra
				}
			}
		}
	}
	return flags
}

// ControlPanel reports whether a request is for Craft's control panel or an
// action endpoint (a CP save is a POST to one of them), whatever its method.
// It is used to label bypassed responses, not on the hit path.
func (b *BypassRules) ControlPanel(r *http.Request) bool {
	var path, rawQuery string
	if r.URL != nil {
		path, rawQuery = r.URL.Path, r.URL.RawQuery
	}
	cp, action := b.triggers()
	seg := craftRoute(path)
	q := b.scanQuery(rawQuery, cp, action)
	return routeHasTrigger(seg, cp) || q&queryCP != 0 || routeHasTrigger(seg, action) || isSpecialPath(seg) || q&queryAction != 0
}
