// Package natstest runs a real NATS server with JetStream inside a test
// process, on 127.0.0.1, for the tests of cluster mode (the core's e2e
// harness and the command's multi-process tests).
package natstest

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Server is a NATS server with JetStream. Its port and storage stay the
// same across Stop and Start, so clients reconnect to it and streams
// survive.
type Server struct {
	t    testing.TB
	dir  string
	port int
	s    *server.Server
}

// Start starts a server until the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	n := &Server{t: t, dir: t.TempDir(), port: server.RANDOM_PORT}
	n.Start()
	t.Cleanup(n.Stop)
	return n
}

// Start starts the server (again).
func (n *Server) Start() {
	n.t.Helper()
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: n.port, JetStream: true, StoreDir: n.dir,
		NoLog: true, NoSigs: true, DisableJetStreamBanner: true,
	})
	if err != nil {
		n.t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		n.t.Fatal("NATS server not ready")
	}
	n.s, n.port = s, s.Addr().(*net.TCPAddr).Port
}

// Stop shuts the server down (idempotent).
func (n *Server) Stop() {
	if n.s != nil {
		n.s.Shutdown()
		n.s.WaitForShutdown()
		n.s = nil
	}
}

// URL is the server's client URL.
func (n *Server) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.port) }

// JetStream is a JetStream client of the server at url, as another writer
// (an operator, a tool, a misbehaving node) uses it, bypassing the cluster
// tier; its connection is closed when the test ends.
func JetStream(t testing.TB, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}
