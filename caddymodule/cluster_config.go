package caddymodule

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/craftedge/craftedge/cluster"
)

// ClusterConfig joins this node to a craftedge cluster on NATS JetStream
// (docs/guides/cluster.md): purges fan out to every node, the kill switch
// is shared, and vendor work runs on one node at a time. Without it
// nothing connects and nothing changes. String values take placeholders
// ({env.NATS_PASSWORD}), resolved when the config loads; an unset or
// empty variable is an error.
type ClusterConfig struct {
	// NodeName names this node: its durable purge consumer, its cursor
	// and the holder of its leases. Unique among the nodes of a
	// namespace, stable across restarts, 1 to 64 letters, digits, '-' or
	// '_'. Required.
	NodeName string `json:"node_name,omitempty"`

	// Namespace prefixes every stream, bucket and subject, so several
	// sites can share one NATS deployment. Default "craftedge".
	Namespace string `json:"namespace,omitempty"`

	// URLs are the NATS servers to connect to ("nats://host:4222",
	// "tls://host:4222"). Exactly one of URLs and Embedded is set.
	URLs []string `json:"urls,omitempty"`

	// Embedded runs a NATS server with JetStream inside this process;
	// the nodes' servers cluster through NATS routes. Exactly one of URLs
	// and Embedded is set.
	Embedded *ClusterEmbedded `json:"embedded,omitempty"`

	// Auth holds the credentials (at most one kind), normally from
	// {env.*} placeholders.
	Auth *ClusterAuth `json:"auth,omitempty"`

	// TLS configures TLS to the servers of URLs; without it TLS is used
	// only for tls:// URLs, with the system roots.
	TLS *ClusterTLS `json:"tls,omitempty"`

	// Replicas is how many NATS servers keep each stream and bucket (1
	// to 5). Default 1 with URLs (use 3 on a 3-server NATS cluster) and
	// min(3, 1 + routes) with Embedded.
	Replicas int `json:"replicas,omitempty"`

	// PurgeMaxAge bounds the purge stream by age: a node away for longer
	// cannot replay what it missed, drops its memory tier and marks its
	// snapshots stale. Default 24h, at least 1s.
	PurgeMaxAge caddy.Duration `json:"purge_max_age,omitempty"`

	// PurgeMaxBytes bounds the purge stream's size, oldest purges
	// dropped first. Default 64 MiB, at least 4 KiB.
	PurgeMaxBytes int64 `json:"purge_max_bytes,omitempty"`

	// LeaseTTL is how long a lease outlives its holder's last renewal:
	// the longest handover of vendor work after its node dies. Default
	// 5s, at least 500ms.
	LeaseTTL caddy.Duration `json:"lease_ttl,omitempty"`

	// MaxQueued bounds the purges kept in memory while NATS is
	// unreachable; beyond it they collapse into one purge-all. Default
	// 10000.
	MaxQueued int `json:"max_queued,omitempty"`

	// ReconnectWait is the pause between reconnection attempts. Default
	// 1s.
	ReconnectWait caddy.Duration `json:"reconnect_wait,omitempty"`

	// Timeout bounds every request to NATS (publish, key-value
	// operation, stream management). Default 5s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
}

// ClusterEmbedded configures the NATS server a node runs in its process.
type ClusterEmbedded struct {
	// Listen is the client listener, host:port (port 0 picks a free
	// port). Required.
	Listen string `json:"listen,omitempty"`

	// StoreDir is the JetStream storage directory, private to this node.
	// Required.
	StoreDir string `json:"store_dir,omitempty"`

	// ClusterName names the NATS cluster, the same on every node.
	// Required with ClusterListen.
	ClusterName string `json:"cluster_name,omitempty"`

	// ClusterListen is the route listener, host:port. Empty runs a
	// single server without routes.
	ClusterListen string `json:"cluster_listen,omitempty"`

	// Routes are the route URLs of the other nodes' servers
	// ("nats-route://10.0.0.2:6222").
	Routes []string `json:"routes,omitempty"`
}

// ClusterAuth holds the credentials for NATS: user and password, a
// token, or a credentials file (not with Embedded).
type ClusterAuth struct {
	// User and Password authenticate with a user name and password; an
	// embedded server requires them from clients and routes.
	User     string `json:"user,omitempty"`
	Password string `json:"password,omitempty"`

	// Token authenticates with a token.
	Token string `json:"token,omitempty"`

	// CredsFile is the path of a NATS credentials file (JWT and NKey
	// seed), for an operator-mode NATS deployment.
	CredsFile string `json:"creds_file,omitempty"`
}

// ClusterTLS configures TLS to the NATS servers of URLs.
type ClusterTLS struct {
	// CAFile is a PEM file of the CAs that sign the servers'
	// certificates; empty uses the system roots.
	CAFile string `json:"ca_file,omitempty"`

	// CertFile and KeyFile are a client certificate and its key (PEM),
	// for servers that verify clients; both or neither.
	CertFile string `json:"cert_file,omitempty"`
	KeyFile  string `json:"key_file,omitempty"`

	// ServerName is the name checked against the servers' certificates;
	// empty uses the host of the URL.
	ServerName string `json:"server_name,omitempty"`
}

// resolve maps the config to the tier's, replacing placeholders with
// repl (nil checks the shape only: placeholders stay, files are not
// read). Errors name the field.
func (c *ClusterConfig) resolve(repl *caddy.Replacer) (cluster.Config, error) {
	var firstErr error
	r := func(field, s string) string {
		if repl == nil && strings.Contains(s, "{") {
			return "placeholder" // a valid name, URL part or secret: checked when it loads
		}
		if repl == nil || s == "" || firstErr != nil {
			return s
		}
		out, err := repl.ReplaceOrErr(s, true, true)
		if err != nil {
			firstErr = fmt.Errorf("cluster: %s: %w", field, err)
		}
		return out
	}
	rs := func(field string, ss []string) []string {
		var out []string
		for i, s := range ss {
			out = append(out, r(fmt.Sprintf("%s[%d]", field, i), s))
		}
		return out
	}
	cfg := cluster.Config{
		NodeName:      r("node_name", c.NodeName),
		Namespace:     r("namespace", c.Namespace),
		URLs:          rs("urls", c.URLs),
		Replicas:      c.Replicas,
		PurgeMaxAge:   time.Duration(c.PurgeMaxAge),
		PurgeMaxBytes: c.PurgeMaxBytes,
		LeaseTTL:      time.Duration(c.LeaseTTL),
		MaxQueued:     c.MaxQueued,
		ReconnectWait: time.Duration(c.ReconnectWait),
		Timeout:       time.Duration(c.Timeout),
	}
	if e := c.Embedded; e != nil {
		cfg.Embedded = &cluster.Embedded{
			Listen:        r("embedded listen", e.Listen),
			StoreDir:      r("embedded store_dir", e.StoreDir),
			ClusterName:   r("embedded cluster_name", e.ClusterName),
			ClusterListen: r("embedded cluster_listen", e.ClusterListen),
			Routes:        rs("embedded routes", e.Routes),
		}
	}
	if a := c.Auth; a != nil {
		cfg.Auth = cluster.Auth{
			User:      r("auth user", a.User),
			Password:  r("auth password", a.Password),
			Token:     r("auth token", a.Token),
			CredsFile: r("auth creds_file", a.CredsFile),
		}
	}
	if t := c.TLS; t != nil {
		cfg.TLS = &cluster.TLS{
			CAFile:     r("tls ca_file", t.CAFile),
			CertFile:   r("tls cert_file", t.CertFile),
			KeyFile:    r("tls key_file", t.KeyFile),
			ServerName: r("tls server_name", t.ServerName),
		}
	}
	if firstErr != nil {
		return cfg, firstErr
	}
	if repl == nil {
		// The shape only: the files are read when the config loads
		// (they may not exist where the Caddyfile is adapted).
		if cfg.Auth.CredsFile != "" && cfg.Embedded == nil {
			cfg.Auth.CredsFile = ""
			if cfg.Auth.User == "" && cfg.Auth.Token == "" {
				cfg.Auth.Token = "creds_file" // counts as one kind of credential
			}
		}
		if t := cfg.TLS; t != nil {
			if (t.CertFile == "") != (t.KeyFile == "") {
				return cfg, fmt.Errorf("cluster: tls: cert_file and key_file go together")
			}
			cfg.TLS = &cluster.TLS{ServerName: t.ServerName}
		}
	}
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// unmarshalCluster parses the cluster block of the global option (the
// dispenser is on "cluster"):
//
//	cluster {
//	    node_name       <name>
//	    namespace       <name>
//	    urls            <url>...
//	    embedded {
//	        listen         <host:port>
//	        store_dir      <path>
//	        cluster_name   <name>
//	        cluster_listen <host:port>
//	        routes         <url>...
//	    }
//	    auth {
//	        user       <user>
//	        password   <password>
//	        token      <token>
//	        creds_file <path>
//	    }
//	    tls {
//	        ca_file     <path>
//	        cert_file   <path>
//	        key_file    <path>
//	        server_name <name>
//	    }
//	    replicas        <1-5>
//	    purge_max_age   <duration>
//	    purge_max_bytes <size>
//	    lease_ttl       <duration>
//	    max_queued      <n>
//	    reconnect_wait  <duration>
//	    timeout         <duration>
//	}
//
// Every problem the config shows before it loads (a missing node_name,
// urls with embedded, a lease_ttl under 500ms) is an error naming the
// block's line; unreadable files and unset variables are found when the
// config loads.
func (a *App) unmarshalCluster(d *caddyfile.Dispenser) error {
	if a.Cluster != nil {
		return d.Errf("cluster is configured twice")
	}
	file, line := d.File(), d.Line()
	if d.NextArg() {
		return d.ArgErr()
	}
	c := &ClusterConfig{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		var err error
		switch name {
		case "node_name":
			c.NodeName, err = clusterOneArg(d)
		case "namespace":
			c.Namespace, err = clusterOneArg(d)
		case "urls":
			c.URLs, err = clusterArgs(d, c.URLs)
		case "embedded":
			err = c.unmarshalEmbedded(d)
		case "auth":
			err = c.unmarshalAuth(d)
		case "tls":
			err = c.unmarshalTLS(d)
		case "replicas":
			c.Replicas, err = parseIntArg(d, "cluster replicas", 1, 5, "")
		case "purge_max_age":
			c.PurgeMaxAge, err = clusterDuration(d)
		case "purge_max_bytes":
			c.PurgeMaxBytes, err = parseSize(d)
			if err == nil && d.NextArg() {
				err = d.ArgErr()
			}
		case "lease_ttl":
			c.LeaseTTL, err = clusterDuration(d)
		case "max_queued":
			c.MaxQueued, err = parseIntArg(d, "cluster max_queued", 1, math.MaxInt, "")
		case "reconnect_wait":
			c.ReconnectWait, err = clusterDuration(d)
		case "timeout":
			c.Timeout, err = clusterDuration(d)
		default:
			return d.Errf("cluster: unrecognized subdirective %q", name)
		}
		if err != nil {
			return err
		}
	}
	if _, err := c.resolve(nil); err != nil {
		return fmt.Errorf("%s:%d: %w", file, line, err)
	}
	a.Cluster = c
	return nil
}

func (c *ClusterConfig) unmarshalEmbedded(d *caddyfile.Dispenser) error {
	if c.Embedded != nil {
		return d.Errf("cluster: embedded is configured twice")
	}
	e := &ClusterEmbedded{}
	err := clusterSubBlock(d, "embedded", map[string]*string{
		"listen": &e.Listen, "store_dir": &e.StoreDir, "cluster_name": &e.ClusterName, "cluster_listen": &e.ClusterListen,
	}, map[string]*[]string{"routes": &e.Routes})
	c.Embedded = e
	return err
}

func (c *ClusterConfig) unmarshalAuth(d *caddyfile.Dispenser) error {
	if c.Auth != nil {
		return d.Errf("cluster: auth is configured twice")
	}
	a := &ClusterAuth{}
	err := clusterSubBlock(d, "auth", map[string]*string{
		"user": &a.User, "password": &a.Password, "token": &a.Token, "creds_file": &a.CredsFile,
	}, nil)
	c.Auth = a
	return err
}

func (c *ClusterConfig) unmarshalTLS(d *caddyfile.Dispenser) error {
	if c.TLS != nil {
		return d.Errf("cluster: tls is configured twice")
	}
	t := &ClusterTLS{}
	err := clusterSubBlock(d, "tls", map[string]*string{
		"ca_file": &t.CAFile, "cert_file": &t.CertFile, "key_file": &t.KeyFile, "server_name": &t.ServerName,
	}, nil)
	c.TLS = t
	return err
}

// clusterSubBlock parses a sub-block (the dispenser is on its name) of
// settings taking one value (one) or one or more (many).
func clusterSubBlock(d *caddyfile.Dispenser, block string, one map[string]*string, many map[string]*[]string) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		var err error
		if p, ok := one[name]; ok {
			*p, err = clusterOneArg(d)
		} else if p, ok := many[name]; ok {
			*p, err = clusterArgs(d, *p)
		} else {
			return d.Errf("cluster: %s: unrecognized subdirective %q", block, name)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// clusterOneArg reads exactly one argument.
func clusterOneArg(d *caddyfile.Dispenser) (string, error) {
	v, err := oneArg(d)
	if err != nil {
		return "", err
	}
	if d.NextArg() {
		return "", d.ArgErr()
	}
	return v, nil
}

// clusterArgs reads one or more arguments, appended to have.
func clusterArgs(d *caddyfile.Dispenser, have []string) ([]string, error) {
	name := d.Val()
	args := d.RemainingArgs()
	if len(args) == 0 {
		return nil, d.Errf("cluster: %s needs at least one value", name)
	}
	return append(have, args...), nil
}

// clusterDuration reads exactly one duration argument, which must not
// be zero (zero is the default, spelled by leaving the option out).
func clusterDuration(d *caddyfile.Dispenser) (caddy.Duration, error) {
	name := d.Val()
	dur, err := parseDuration(d)
	if err != nil {
		return 0, err
	}
	if dur == 0 {
		return 0, d.Errf("cluster: %s must be more than 0 (leave it out for the default)", name)
	}
	if d.NextArg() {
		return 0, d.ArgErr()
	}
	return dur, nil
}
