package cachehandler

import (
	"path/filepath"
	"testing"

	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
)

// A bad Craft trigger is a load error naming the Caddyfile line (it was
// only found at provisioning, without the line).
func TestTriggerErrorsNameTheLine(t *testing.T) {
	o := e2e.NewOrigin(t)
	for _, tc := range []struct{ extra, want string }{
		{"cp_trigger a/b", `must be a single path segment`},
		{"cp_trigger /", `empty after removing the leading slash`},
		{"cp_trigger adm*", `must be a single path segment`},
		{"action_trigger a/b", `must be a single path segment`},
		{"action_trigger admin", `the same as the cp trigger`},
		{"action_trigger", `action_trigger needs a value`},
	} {
		cfg := e2e.CaddyfileFor(o, e2e.Options{Storage: filepath.Join(t.TempDir(), "x.db"), HandlerExtra: tc.extra})
		e2e.AssertLoadError(t, cfg, tc.want)
	}
}

// action_trigger follows Craft's actionTrigger general setting: requests
// under the configured segment are controller actions (never cached),
// while "/actions/..." is then an ordinary page; the action param and
// Craft's special paths bypass whatever the trigger.
func TestActionTriggerConfigurable(t *testing.T) {
	o := e2e.NewOrigin(t)
	o.Fallback = e2e.PageHandler("page", "t")
	g := e2e.StartGateway(t, o, e2e.Options{HandlerExtra: "action_trigger /Do"})
	for _, p := range []string{"/do/users/session-info", "/DO/users/session-info", "/de/do/x", "/index.php?p=do/users/x", "/logout", "/page?action=users/logout"} {
		e2e.WantCacheStatus(t, g.Get(p), "craftedge; fwd=bypass; detail=action")
	}
	e2e.WantCacheStatus(t, g.Get("/actions/x"), "craftedge; fwd=miss; stored")
	e2e.WantCacheStatus(t, g.Get("/actions/x"), "craftedge; hit")
}
