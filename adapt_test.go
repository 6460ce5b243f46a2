package craftedge

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

var updateGolden = flag.Bool("update", false, "rewrite the expected JSON of testdata/caddyfile_adapt/*.caddyfiletest")

// TestCaddyfileAdapt adapts every testdata/caddyfile_adapt/*.caddyfiletest
// (a Caddyfile, a line of dashes, the expected JSON: Caddy's own
// caddyfile_adapt format) and compares the JSON, so a directive reorder
// or a parser change shows up as a diff. go test -run TestCaddyfileAdapt
// -update rewrites the expected JSON; review the diff before committing.
func TestCaddyfileAdapt(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "caddyfile_adapt", "*.caddyfiletest"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	const sep = "----------"
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".caddyfiletest"), func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			in, want, ok := strings.Cut(string(raw), "\n"+sep+"\n")
			if !ok {
				t.Fatalf("%s: no %q line between the Caddyfile and the JSON", file, sep)
			}
			adapter := caddyconfig.GetAdapter("caddyfile")
			out, warnings, err := adapter.Adapt([]byte(in+"\n"), map[string]any{"filename": file})
			if err != nil {
				t.Fatalf("%s: adapting: %v", file, err)
			}
			for _, w := range warnings {
				t.Errorf("%s:%d: warning: %s", file, w.Line, w.Message)
			}
			var got bytes.Buffer
			if err := json.Indent(&got, out, "", "\t"); err != nil {
				t.Fatal(err)
			}
			if *updateGolden {
				if err := os.WriteFile(file, []byte(in+"\n"+sep+"\n"+got.String()+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if strings.TrimSpace(got.String()) != strings.TrimSpace(want) {
				t.Errorf("%s: adapted JSON differs from the golden one (go test -run TestCaddyfileAdapt -update, then review the diff)\ngot:\n%s", file, got.String())
			}
		})
	}
}
