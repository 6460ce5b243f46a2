package craftedge

import (
	"testing"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
)

// A binary built with this package alone (xcaddy build --with
// github.com/craftedge/craftedge) has craftedge's subcommands, as caddypki's
// import gives Caddy `trust`; `demo` belongs to cmd/craftedge only.
func TestModuleRegistersCommands(t *testing.T) {
	cmds := caddycmd.Commands()
	for _, name := range []string{"backfill", "reencrypt"} {
		if _, ok := cmds[name]; !ok {
			t.Errorf("command %q not registered by the module packages", name)
		}
	}
	if _, ok := cmds["demo"]; ok {
		t.Error("demo is registered by the module packages; it belongs to cmd/craftedge")
	}
}
