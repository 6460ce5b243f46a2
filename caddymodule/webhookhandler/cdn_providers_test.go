package webhookhandler

// The tests' cdn blocks name cloudflare and generic: modules of
// caddymodule/cdn, which the root package registers in a real build.
import _ "github.com/craftedge/craftedge/caddymodule/cdn"
