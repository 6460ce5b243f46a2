package caddymodule_test

// The core's tests configure directives of the module packages (the
// records API is vendorCaddyfile's default site; the harness's site puts
// the craftedge cache handler in front of every origin), so its test binary
// registers them. Only the test binary: the core itself never imports a
// leaf (go list -deps ./caddymodule), and an internal test cannot (import
// cycle).
import (
	_ "github.com/craftedge/craftedge/caddymodule/cachehandler"
	_ "github.com/craftedge/craftedge/caddymodule/records"
)
