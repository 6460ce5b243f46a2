package cluster

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigValidation(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f.pem")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	ok := func() Config { return Config{NodeName: "n1", URLs: []string{"nats://127.0.0.1:4222"}} }
	emb := func() Config {
		return Config{NodeName: "n1", Embedded: &Embedded{Listen: "127.0.0.1:0", StoreDir: dir}}
	}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		base func() Config
		want string // substring of the error; "" = valid
	}{
		{"valid urls", func(*Config) {}, ok, ""},
		{"valid embedded", func(*Config) {}, emb, ""},
		{"no node name", func(c *Config) { c.NodeName = "" }, ok, "node_name is required"},
		{"node name with a dot", func(c *Config) { c.NodeName = "a.b" }, ok, `node_name "a.b"`},
		{"node name too long", func(c *Config) { c.NodeName = strings.Repeat("a", 65) }, ok, "node_name"},
		{"namespace with a wildcard", func(c *Config) { c.Namespace = "site*" }, ok, `namespace "site*"`},
		{"neither urls nor embedded", func(c *Config) { c.URLs = nil }, ok, "give the NATS urls or an embedded server"},
		{"both", func(c *Config) { c.URLs = []string{"nats://x"} }, emb, "exclude each other"},
		{"empty url", func(c *Config) { c.URLs = []string{""} }, ok, "urls[0] is empty"},
		{"user without password", func(c *Config) { c.Auth.User = "u" }, ok, "user and password go together"},
		{"two kinds of auth", func(c *Config) { c.Auth = Auth{Token: "t", User: "u", Password: "p"} }, ok, "give one of"},
		{"missing creds file", func(c *Config) { c.Auth.CredsFile = filepath.Join(dir, "nope.creds") }, ok, "auth creds_file: open"},
		{"creds file with embedded", func(c *Config) { c.Auth.CredsFile = file }, emb, "operator-mode"},
		{"cert without key", func(c *Config) { c.TLS = &TLS{CertFile: file} }, ok, "cert_file and key_file go together"},
		{"missing ca", func(c *Config) { c.TLS = &TLS{CAFile: filepath.Join(dir, "ca.pem")} }, ok, "tls ca_file: open"},
		{"tls with embedded", func(c *Config) { c.TLS = &TLS{CAFile: file} }, emb, "tls applies to urls"},
		{"embedded without store", func(c *Config) { c.Embedded.StoreDir = "" }, emb, "store_dir is required"},
		{"embedded bad listen", func(c *Config) { c.Embedded.Listen = "4222" }, emb, `embedded listen "4222"`},
		{"embedded bad port", func(c *Config) { c.Embedded.Listen = "127.0.0.1:70000" }, emb, "port must be 0 to 65535"},
		{"routes without listener", func(c *Config) { c.Embedded.Routes = []string{"nats-route://h:6222"} }, emb, "routes need cluster_listen"},
		{"cluster without name", func(c *Config) { c.Embedded.ClusterListen = "127.0.0.1:0" }, emb, "cluster_name is required"},
		{"replicas 6", func(c *Config) { c.Replicas = 6 }, ok, "replicas 6"},
		{"negative age", func(c *Config) { c.PurgeMaxAge = -time.Second }, ok, "purge_max_age -1s is negative"},
		{"age too short", func(c *Config) { c.PurgeMaxAge = time.Millisecond }, ok, "purge_max_age 1ms is shorter than 1s"},
		{"bytes too small", func(c *Config) { c.PurgeMaxBytes = 100 }, ok, "purge_max_bytes 100 is less than 4096"},
		{"lease too short", func(c *Config) { c.LeaseTTL = 100 * time.Millisecond }, ok, "lease_ttl 100ms is shorter than 500ms"},
		{"negative queue", func(c *Config) { c.MaxQueued = -1 }, ok, "max_queued -1 is negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.base()
			tc.mod(&c)
			_, err := c.withDefaults()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	c, err := Config{NodeName: "n", URLs: []string{"nats://h"}}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.Namespace != "craftedge" || c.Replicas != 1 || c.PurgeMaxAge != 24*time.Hour || c.PurgeMaxBytes != 64<<20 ||
		c.LeaseTTL != 5*time.Second || c.MaxQueued != 10000 || c.Timeout != 5*time.Second {
		t.Fatalf("defaults: %+v", c)
	}
	c, _ = Config{NodeName: "n", Embedded: &Embedded{Listen: "h:0", StoreDir: "d", ClusterName: "c", ClusterListen: "h:0",
		Routes: []string{"nats-route://a:1"}}}.withDefaults()
	if c.Replicas != 2 {
		t.Fatalf("embedded with one route: replicas %d", c.Replicas)
	}
}
