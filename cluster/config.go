package cluster

import (
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"strconv"
	"time"
)

// Defaults for zero Config fields.
const (
	DefaultNamespace     = "craftedge"
	DefaultPurgeMaxAge   = 24 * time.Hour
	DefaultPurgeMaxBytes = 64 << 20
	DefaultLeaseTTL      = 5 * time.Second
	DefaultMaxQueued     = 10000
	DefaultReconnectWait = time.Second
	DefaultTimeout       = 5 * time.Second

	// minLeaseTTL is the shortest lease TTL accepted: the node renews at a
	// third of it, and JetStream expires keys on its own timer.
	minLeaseTTL = 500 * time.Millisecond
	// minPurgeMaxAge keeps the purge stream long enough to replay a short
	// disconnection.
	minPurgeMaxAge = time.Second
	// minPurgeMaxBytes keeps room for a few large purges.
	minPurgeMaxBytes = 4 << 10
)

// Config configures a Node. Without a Config there is no Node and nothing
// connects: the Caddy glue creates a Node only when the `cluster` block is
// present. Zero values select the documented defaults; where zero would be
// meaningful to NATS (unlimited retention) it is not offered.
type Config struct {
	// NodeName names this node in the cluster: its durable purge
	// consumer, its cursor and the holder of its leases. It must be unique
	// among the nodes sharing a Namespace, stable across restarts, and made
	// of 1 to 64 letters, digits, '-' or '_'. Required.
	NodeName string

	// Namespace prefixes every stream, bucket and subject, so several sites
	// can share one NATS deployment; default "craftedge". Same character
	// set as NodeName, at most 32 characters.
	Namespace string

	// URLs are the NATS servers to connect to ("nats://host:4222",
	// "tls://host:4222"). Exactly one of URLs and Embedded is set.
	URLs []string

	// Embedded runs a NATS server with JetStream inside this process;
	// nodes cluster through NATS routes. Exactly one of URLs and Embedded
	// is set.
	Embedded *Embedded

	// Auth holds the credentials: user and password, a token, or a
	// credentials file. The values come from the caller (the Caddyfile
	// takes {env.*} placeholders); at most one kind is set.
	Auth Auth

	// TLS configures TLS to the NATS servers given in URLs; nil uses
	// TLS only if a URL asks for it (tls://), with the system roots.
	TLS *TLS

	// Replicas is how many servers keep each stream and bucket (1 to 5).
	// Zero selects 1 with URLs, and min(3, 1+len(Embedded.Routes)) with
	// an embedded server. A 3-server NATS cluster should use 3, so losing
	// one server loses nothing.
	Replicas int

	// PurgeMaxAge bounds the purge stream by age: a node disconnected for
	// longer cannot replay what it missed and reports a gap. Zero selects
	// 24h; at least 1s.
	PurgeMaxAge time.Duration

	// PurgeMaxBytes bounds the purge stream's size (oldest purges are
	// dropped first); zero selects 64 MiB; at least 4 KiB.
	PurgeMaxBytes int64

	// LeaseTTL is how long a lease outlives its holder's last renewal,
	// hence the longest handover after a holder dies. Holders renew at a
	// third of it. Zero selects 5s; at least 500ms.
	LeaseTTL time.Duration

	// MaxQueued bounds the purges waiting in memory for NATS (while it is
	// unreachable). When it is exceeded the queue collapses into one
	// purge-all, the only purge that covers everything it replaces. Zero
	// selects 10000.
	MaxQueued int

	// ReconnectWait is the pause between reconnection attempts; zero
	// selects 1s.
	ReconnectWait time.Duration

	// Timeout bounds each request to NATS (publish, key-value operation,
	// stream management); zero selects 5s.
	Timeout time.Duration
}

// Embedded configures the NATS server a node runs in its own process.
type Embedded struct {
	// Listen is the client listener, host:port; port 0 picks a free
	// port. Required: other tools (the nats CLI) connect here.
	Listen string

	// StoreDir is the JetStream storage directory. Required; it must be
	// private to this node.
	StoreDir string

	// ClusterName names the NATS cluster; the same on every node.
	// Required when Routes or ClusterListen is set.
	ClusterName string

	// ClusterListen is the route listener, host:port (port 0 picks a free
	// port). Empty runs a single server without routes.
	ClusterListen string

	// Routes are the route URLs of the other nodes' embedded servers
	// ("nats-route://10.0.0.2:6222"). With Auth.User and Auth.Password
	// set, routes authenticate with them too.
	Routes []string
}

// Auth holds credentials for NATS. At most one kind is set.
type Auth struct {
	// User and Password authenticate with a user name and password.
	User     string
	Password string
	// Token authenticates with a token.
	Token string
	// CredsFile is the path of a NATS credentials file (JWT and NKey
	// seed). Not accepted with Embedded.
	CredsFile string
}

// TLS configures TLS to NATS servers.
type TLS struct {
	// CAFile is a PEM file of the CAs that sign the servers' certificates;
	// empty uses the system roots.
	CAFile string
	// CertFile and KeyFile are the client certificate and key (PEM), for
	// servers that verify clients; both or neither.
	CertFile string
	KeyFile  string
	// ServerName is the name checked against the servers' certificates;
	// empty uses the host of the URL.
	ServerName string
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// Validate reports the first problem of c as Start would (the error
// names the field), without starting anything.
func (c Config) Validate() error {
	_, err := c.withDefaults()
	return err
}

// withDefaults returns a copy of c with the defaults applied, or the
// first problem found. Errors name the field.
func (c Config) withDefaults() (Config, error) {
	if c.NodeName == "" {
		return c, errors.New("cluster: node_name is required")
	}
	if len(c.NodeName) > 64 || !nameRE.MatchString(c.NodeName) {
		return c, fmt.Errorf("cluster: node_name %q: use 1 to 64 letters, digits, '-' or '_'", c.NodeName)
	}
	if c.Namespace == "" {
		c.Namespace = DefaultNamespace
	}
	if len(c.Namespace) > 32 || !nameRE.MatchString(c.Namespace) {
		return c, fmt.Errorf("cluster: namespace %q: use 1 to 32 letters, digits, '-' or '_'", c.Namespace)
	}
	switch {
	case len(c.URLs) == 0 && c.Embedded == nil:
		return c, errors.New("cluster: give the NATS urls or an embedded server")
	case len(c.URLs) > 0 && c.Embedded != nil:
		return c, errors.New("cluster: urls and an embedded server exclude each other (an embedded node connects to its own server)")
	}
	for i, u := range c.URLs {
		if u == "" {
			return c, fmt.Errorf("cluster: urls[%d] is empty", i)
		}
	}
	if err := c.Auth.validate(c.Embedded != nil); err != nil {
		return c, err
	}
	if c.TLS != nil {
		if c.Embedded != nil {
			return c, errors.New("cluster: tls applies to urls; an embedded node connects to its own server in process")
		}
		if err := c.TLS.validate(); err != nil {
			return c, err
		}
	}
	if c.Embedded != nil {
		if err := c.Embedded.validate(); err != nil {
			return c, err
		}
	}
	switch {
	case c.Replicas < 0 || c.Replicas > 5:
		return c, fmt.Errorf("cluster: replicas %d: use 1 to 5", c.Replicas)
	case c.Replicas == 0 && c.Embedded != nil:
		c.Replicas = min(3, 1+len(c.Embedded.Routes))
	case c.Replicas == 0:
		c.Replicas = 1
	}
	var err error
	if c.PurgeMaxAge, err = duration("purge_max_age", c.PurgeMaxAge, DefaultPurgeMaxAge, minPurgeMaxAge); err != nil {
		return c, err
	}
	if c.LeaseTTL, err = duration("lease_ttl", c.LeaseTTL, DefaultLeaseTTL, minLeaseTTL); err != nil {
		return c, err
	}
	if c.ReconnectWait, err = duration("reconnect_wait", c.ReconnectWait, DefaultReconnectWait, 10*time.Millisecond); err != nil {
		return c, err
	}
	if c.Timeout, err = duration("timeout", c.Timeout, DefaultTimeout, 10*time.Millisecond); err != nil {
		return c, err
	}
	switch {
	case c.PurgeMaxBytes < 0:
		return c, fmt.Errorf("cluster: purge_max_bytes %d is negative", c.PurgeMaxBytes)
	case c.PurgeMaxBytes == 0:
		c.PurgeMaxBytes = DefaultPurgeMaxBytes
	case c.PurgeMaxBytes < minPurgeMaxBytes:
		return c, fmt.Errorf("cluster: purge_max_bytes %d is less than %d", c.PurgeMaxBytes, minPurgeMaxBytes)
	}
	switch {
	case c.MaxQueued < 0:
		return c, fmt.Errorf("cluster: max_queued %d is negative", c.MaxQueued)
	case c.MaxQueued == 0:
		c.MaxQueued = DefaultMaxQueued
	}
	return c, nil
}

// duration applies def to a zero d and checks the minimum.
func duration(name string, d, def, least time.Duration) (time.Duration, error) {
	switch {
	case d < 0:
		return d, fmt.Errorf("cluster: %s %s is negative", name, d)
	case d == 0:
		return def, nil
	case d < least:
		return d, fmt.Errorf("cluster: %s %s is shorter than %s", name, d, least)
	}
	return d, nil
}

func (a Auth) validate(embedded bool) error {
	kinds := 0
	if a.User != "" || a.Password != "" {
		if a.User == "" || a.Password == "" {
			return errors.New("cluster: auth: user and password go together")
		}
		kinds++
	}
	if a.Token != "" {
		kinds++
	}
	if a.CredsFile != "" {
		if embedded {
			return errors.New("cluster: auth: a credentials file needs an operator-mode NATS deployment; an embedded server takes user/password or a token")
		}
		if err := readable("auth creds_file", a.CredsFile); err != nil {
			return err
		}
		kinds++
	}
	if kinds > 1 {
		return errors.New("cluster: auth: give one of user/password, token or creds_file")
	}
	return nil
}

func (t *TLS) validate() error {
	if (t.CertFile == "") != (t.KeyFile == "") {
		return errors.New("cluster: tls: cert_file and key_file go together")
	}
	for _, f := range []struct{ name, path string }{{"ca_file", t.CAFile}, {"cert_file", t.CertFile}, {"key_file", t.KeyFile}} {
		if f.path == "" {
			continue
		}
		if err := readable("tls "+f.name, f.path); err != nil {
			return err
		}
	}
	return nil
}

func (e *Embedded) validate() error {
	if e.StoreDir == "" {
		return errors.New("cluster: embedded: store_dir is required")
	}
	if _, err := splitHostPort("embedded listen", e.Listen); err != nil {
		return err
	}
	if e.ClusterListen == "" && len(e.Routes) > 0 {
		return errors.New("cluster: embedded: routes need cluster_listen (the routes connect both ways)")
	}
	if e.ClusterListen != "" {
		if e.ClusterName == "" {
			return errors.New("cluster: embedded: cluster_name is required with cluster_listen")
		}
		if !nameRE.MatchString(e.ClusterName) {
			return fmt.Errorf("cluster: embedded: cluster_name %q: use letters, digits, '-' or '_'", e.ClusterName)
		}
		if _, err := splitHostPort("embedded cluster_listen", e.ClusterListen); err != nil {
			return err
		}
	}
	for i, r := range e.Routes {
		if r == "" {
			return fmt.Errorf("cluster: embedded: routes[%d] is empty", i)
		}
	}
	return nil
}

type hostPort struct {
	host string
	port int
}

// splitHostPort parses host:port; port 0 means any free port.
func splitHostPort(name, s string) (hostPort, error) {
	host, p, err := net.SplitHostPort(s)
	if err != nil {
		return hostPort{}, fmt.Errorf("cluster: %s %q: %w", name, s, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return hostPort{}, fmt.Errorf("cluster: %s %q: port must be 0 to 65535", name, s)
	}
	return hostPort{host, port}, nil
}

func readable(name, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("cluster: %s: %w", name, err)
	}
	return f.Close()
}
