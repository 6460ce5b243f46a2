package vendors

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateNamesFields(t *testing.T) {
	if err := testConfig("http://127.0.0.1:1").Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	cases := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"rate zero", func(c *Config) { c.Rate.PerSecond = 0 }, "rate.per_second"},
		{"no base url", func(c *Config) { c.BaseURLs = nil }, "base_urls"},
		{"bad url", func(c *Config) { c.BaseURLs = []string{"ftp://x"} }, "base_urls[0]"},
		{"credentials in url", func(c *Config) { c.BaseURLs = []string{"https://user:" + testToken + "@x"} }, "credentials"},
		{"missing id mapping", func(c *Config) { r := c.Resources["products"]; r.ID = ""; c.Resources["products"] = r }, "resources.products: id"},
		{"unknown tag ref", func(c *Config) {
			r := c.Resources["products"]
			r.Tags = []string{"shop:{sku}"}
			c.Resources["products"] = r
		}, "unknown placeholder {sku}"},
		{"unknown path ref", func(c *Config) {
			r := c.Resources["products"]
			r.Get = &GetSpec{Path: "/products/{slug}"}
			c.Resources["products"] = r
		}, "get.path"},
		{"no has-more rule", func(c *Config) {
			r := c.Resources["products"]
			l := *r.List
			l.HasMore = ""
			r.List = &l
			c.Resources["products"] = r
		}, "exactly one of has_more"},
		{"list without updated_at", func(c *Config) {
			r := c.Resources["products"]
			r.UpdatedAt = ""
			c.Resources["products"] = r
		}, "updated_at"},
		{"bad field type", func(c *Config) {
			r := c.Resources["products"]
			r.Fields = map[string]Field{"x": {Path: "x", Type: "date"}}
			c.Resources["products"] = r
		}, "fields.x.type"},
		{"canary percent", func(c *Config) { c.Canary.Percent = 101 }, "canary.percent"},
		{"negative breaker threshold", func(c *Config) { c.Breaker.MinPaths = -1 }, "breaker min_paths must not be negative"},
		{"header with newline", func(c *Config) { c.Headers = Headers{"X-Key": testToken + "\n"} }, "headers"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig("http://127.0.0.1:1")
			cfg.Resources = map[string]Resource{"products": productsResource()}
			tc.mod(&cfg)
			err := cfg.Validate()
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error naming %q, got %v", tc.want, err)
			}
			if strings.Contains(err.Error(), testToken) {
				t.Errorf("error leaks a secret: %v", err)
			}
		})
	}
}
