package caddymodule_test

// The core's end-to-end tests configure the craftedge directive in front
// of their origins, so this test binary registers the cache handler. The
// core's in-package tests cannot import it (caddymodule/cachehandler
// imports the core); this external test file, linked into the same test
// binary, can. The core itself never imports a leaf.
import _ "github.com/craftedge/craftedge/caddymodule/cachehandler"
