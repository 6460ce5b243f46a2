package caddymodule

import (
	"testing"

	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
)

func TestMain(m *testing.M) {
	servedSampleMask = 0 // every hit counts for the warm start's order
	e2e.Main(m, e2e.Seams{Running: Running, FlushSnapshots: FlushSnapshots})
}
