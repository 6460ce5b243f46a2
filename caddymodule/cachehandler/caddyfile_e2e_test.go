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
	} {
		cfg := e2e.CaddyfileFor(o, e2e.Options{Storage: filepath.Join(t.TempDir(), "x.db"), HandlerExtra: tc.extra})
		e2e.AssertLoadError(t, cfg, tc.want)
	}
}
