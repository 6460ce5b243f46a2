package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Each node's Caddyfile is the single-node one with a cluster block in the
// global craftedge option, its own bbolt file and its own ports.
func TestNewClusterNode(t *testing.T) {
	dir := t.TempDir()
	c := config{syncEvery: 5 * time.Second, healthy: 8 * time.Second}
	a, err := newClusterNode("craftedge", dir, 1, "127.0.0.1:1", "http://127.0.0.1:2", "nats://127.0.0.1:3", c)
	if err != nil {
		t.Fatal(err)
	}
	b, err := newClusterNode("craftedge", dir, 2, "127.0.0.1:1", "http://127.0.0.1:2", "nats://127.0.0.1:3", c)
	if err != nil {
		t.Fatal(err)
	}
	if a.site == b.site || a.admin == b.admin {
		t.Fatalf("nodes share an address: %s/%s and %s/%s", a.site, a.admin, b.site, b.admin)
	}
	cfg, err := os.ReadFile(b.config)
	if err != nil {
		t.Fatal(err)
	}
	s := string(cfg)
	for _, want := range []string{
		"\tcraftedge {\n\t\tcluster {\n\t\t\tnode_name node2\n\t\t\turls nats://127.0.0.1:3\n",
		"storage " + filepath.Join(dir, "node2", "craftedge.db") + "\n",
	} {
		if !strings.Contains(s, want) {
			t.Fatalf("node2's Caddyfile lacks %q:\n%s", want, s)
		}
	}
	if n := strings.Count(s, "cluster {"); n != 1 {
		t.Fatalf("node2's Caddyfile has %d cluster blocks:\n%s", n, s)
	}
}

func TestRoundRobinRemove(t *testing.T) {
	rr := &roundRobin{hosts: []string{"a", "b", "c"}}
	rr.remove("c")
	rr.remove("x")
	if strings.Join(rr.hosts, ",") != "a,b" {
		t.Fatalf("hosts %v after removing c", rr.hosts)
	}
}
