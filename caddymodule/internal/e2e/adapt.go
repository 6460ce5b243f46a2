package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// Adapt adapts a Caddyfile to JSON, failing the test on an error.
func Adapt(t *testing.T, caddyfile string) []byte {
	t.Helper()
	b, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
	if err != nil {
		t.Fatalf("adapting: %v", err)
	}
	return b
}

// WantGlobalError adapts the test Caddyfile of o with block in the
// global craftedge option and wants an error containing want that names
// the Caddyfile line line lines below block's first one.
func WantGlobalError(t *testing.T, o *Origin, storage, block, want string, line int) {
	t.Helper()
	cfg := CaddyfileFor(o, Options{Storage: storage, GlobalExtra: block})
	first := strings.Index(cfg, block)
	if first < 0 {
		t.Fatalf("%q not in the Caddyfile", block)
	}
	line += 1 + strings.Count(cfg[:first], "\n")
	_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), nil)
	if err == nil {
		t.Errorf("%q: adapted without error", block)
		return
	}
	if at := fmt.Sprintf("Caddyfile:%d", line); !strings.Contains(err.Error(), at) || !strings.Contains(err.Error(), want) {
		t.Errorf("%q: error %q, want %q at %s", block, err, want, at)
	}
}
