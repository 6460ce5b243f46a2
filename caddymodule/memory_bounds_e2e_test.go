package caddymodule

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
)

// `memory 1PiB` is refused at load with the Caddyfile line, instead of
// letting the memory tier allocate until the process is killed.
func TestMemoryBoundBeyondMachineRefused(t *testing.T) {
	o := e2e.NewOrigin(t)
	g := e2e.StartGateway(t, o, e2e.Options{})
	cf := e2e.CaddyfileFor(o, e2e.Options{Storage: filepath.Join(t.TempDir(), "craftedge.db")})
	cf = strings.Replace(cf, "memory 16MiB", "memory 1PiB", 1)
	r := loadCaddyfile(t, cf)
	if r.Status == http.StatusOK {
		t.Fatal("memory 1PiB was accepted")
	}
	for _, want := range []string{"memory 1.0 PiB is more than this machine can hold", "Caddyfile:"} {
		if !strings.Contains(r.Body, want) {
			t.Fatalf("error %q lacks %q", r.Body, want)
		}
	}
	// The running config is untouched.
	e2e.WantStatus(t, g.Admin(http.MethodGet, "/config/", ""), http.StatusOK)
	e2e.WantStatus(t, g.Get("/"), http.StatusOK)
}
