package vendorsim

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// DefaultAddr is where Start listens when addr is empty: a free port on
// the loopback interface.
const DefaultAddr = "127.0.0.1:0"

// Server is an endpoint served on a real listener.
type Server struct {
	sim  *Sim
	ln   net.Listener
	srv  *http.Server
	done chan struct{} // closed when Serve returns

	once     sync.Once
	closeErr error
}

// Start serves the endpoint on addr (DefaultAddr when empty) until the
// returned Server or the Sim is closed.
func (e *Endpoint) Start(addr string) (*Server, error) {
	if addr == "" {
		addr = DefaultAddr
	}
	s := e.sim
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, errors.New("vendorsim: start: sim is closed")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("vendorsim: listening on %s: %w", addr, err)
	}
	srv := &Server{
		sim:  s,
		ln:   ln,
		srv:  &http.Server{Handler: e, ReadHeaderTimeout: 10 * time.Second},
		done: make(chan struct{}),
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = ln.Close()
		return nil, errors.New("vendorsim: start: sim is closed")
	}
	s.servers[srv] = struct{}{}
	s.mu.Unlock()
	go func() {
		defer close(srv.done)
		_ = srv.srv.Serve(ln) // returns http.ErrServerClosed after Close
	}()
	return srv, nil
}

// Addr returns the listener's address, such as "127.0.0.1:41234".
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL returns the base URL of the server, such as "http://127.0.0.1:41234".
func (s *Server) URL() string { return "http://" + s.Addr() }

// Close stops the server at once: the listener and every connection are
// closed (hung and delayed requests see their context cancelled). It
// returns when the serving goroutine has exited. It is safe to call more
// than once.
func (s *Server) Close() error {
	s.once.Do(func() {
		if err := s.srv.Close(); err != nil {
			s.closeErr = fmt.Errorf("vendorsim: closing server on %s: %w", s.Addr(), err)
		}
		<-s.done
		s.sim.mu.Lock()
		delete(s.sim.servers, s)
		s.sim.mu.Unlock()
	})
	return s.closeErr
}
