package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// startEmbedded starts the node's own NATS server with JetStream and
// waits until it accepts connections.
func startEmbedded(c Config) (*server.Server, error) {
	e := c.Embedded
	listen, _ := splitHostPort("embedded listen", e.Listen)
	opts := &server.Options{
		ServerName:             c.NodeName,
		Host:                   listen.host,
		Port:                   randomIfZero(listen.port),
		JetStream:              true,
		StoreDir:               e.StoreDir,
		NoSigs:                 true,
		NoLog:                  true,
		DisableJetStreamBanner: true,
		Username:               c.Auth.User,
		Password:               c.Auth.Password,
		Authorization:          c.Auth.Token,
	}
	if e.ClusterListen != "" {
		cl, _ := splitHostPort("embedded cluster_listen", e.ClusterListen)
		opts.Cluster = server.ClusterOpts{
			Name:     e.ClusterName,
			Host:     cl.host,
			Port:     randomIfZero(cl.port),
			Username: c.Auth.User,
			Password: c.Auth.Password,
		}
		for i, r := range e.Routes {
			u, err := url.Parse(r)
			if err != nil || u.Host == "" {
				return nil, fmt.Errorf("cluster: embedded: routes[%d] %q is not a URL (nats-route://host:port)", i, r)
			}
			if c.Auth.User != "" && u.User == nil {
				u.User = url.UserPassword(c.Auth.User, c.Auth.Password)
			}
			opts.Routes = append(opts.Routes, u)
		}
	}
	if err := os.MkdirAll(e.StoreDir, 0o700); err != nil {
		return nil, fmt.Errorf("cluster: embedded: creating store_dir: %w", err)
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("cluster: embedded: %w", err)
	}
	s.Start()
	if !s.ReadyForConnections(c.Timeout) {
		s.Shutdown()
		s.WaitForShutdown()
		// The server logs nothing (NoLog): say why when we can tell.
		for _, addr := range []struct{ what, hostPort string }{{"listen", e.Listen}, {"cluster_listen", e.ClusterListen}} {
			if addr.hostPort == "" {
				continue
			}
			l, err := net.Listen("tcp", addr.hostPort)
			if err != nil {
				return nil, fmt.Errorf("cluster: embedded: %s %s: %w", addr.what, addr.hostPort, err)
			}
			_ = l.Close()
		}
		return nil, fmt.Errorf("cluster: embedded: NATS server on %s not ready within %s", e.Listen, c.Timeout)
	}
	return s, nil
}

func randomIfZero(port int) int {
	if port == 0 {
		return server.RANDOM_PORT
	}
	return port
}

// natsOptions maps c to the client's options. The client never blocks
// callers: it connects in the background (RetryOnFailedConnect), retries
// forever, and refuses publishes while disconnected instead of buffering
// them (the node's own bounded queue holds purges).
func natsOptions(c Config, h connHandlers) ([]nats.Option, error) {
	opts := []nats.Option{
		nats.Name("craftedge " + c.NodeName),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(c.ReconnectWait),
		nats.ReconnectJitter(c.ReconnectWait/10, c.ReconnectWait/10),
		nats.ReconnectBufSize(-1),
		nats.Timeout(c.Timeout),
		nats.ConnectHandler(func(*nats.Conn) { h.up() }),
		nats.ReconnectHandler(func(*nats.Conn) { h.up() }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { h.down(err) }),
		nats.ClosedHandler(func(*nats.Conn) { h.down(nats.ErrConnectionClosed) }),
	}
	a := c.Auth
	switch {
	case a.User != "":
		opts = append(opts, nats.UserInfo(a.User, a.Password))
	case a.Token != "":
		opts = append(opts, nats.Token(a.Token))
	case a.CredsFile != "":
		opts = append(opts, nats.UserCredentials(a.CredsFile))
	}
	if c.TLS != nil {
		cfg, err := c.TLS.config()
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.Secure(cfg))
	}
	return opts, nil
}

// connHandlers receive the connection's events.
type connHandlers struct {
	up   func()
	down func(error)
}

// config builds the client TLS configuration.
func (t *TLS) config() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("cluster: tls ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("cluster: tls ca_file %s: no PEM certificate in it", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("cluster: tls cert_file %s / key_file %s: %w", t.CertFile, t.KeyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// errNotConnected is returned by operations that need NATS while the
// node is disconnected; the caller's local effect stands.
var errNotConnected = errors.New("cluster: not connected to NATS")

// ErrNotConnected reports whether err means NATS was unreachable.
func ErrNotConnected(err error) bool {
	return errors.Is(err, errNotConnected) || errors.Is(err, nats.ErrNoServers) ||
		errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrDisconnected) ||
		errors.Is(err, nats.ErrReconnectBufExceeded) || errors.Is(err, nats.ErrConnectionReconnecting)
}

// ErrUnavailable reports whether err means the cluster could not answer
// now (a retry later may succeed): NATS unreachable (ErrNotConnected), or
// connected while JetStream does not answer: a timeout, no responders, a
// stream without a leader (quorum lost), JetStream disabled, or an API
// error with code 503.
func ErrUnavailable(err error) bool {
	if err == nil {
		return false
	}
	if ErrNotConnected(err) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, jetstream.ErrJetStreamNotEnabled) {
		return true
	}
	var api *jetstream.APIError
	return errors.As(err, &api) && api.Code == 503
}
