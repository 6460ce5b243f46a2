package cluster

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// testPKI writes a CA, a server certificate for "nats.test" and
// 127.0.0.1, and a client certificate, as PEM files in dir.
type testPKI struct {
	caFile, certFile, keyFile string
	serverTLS                 *tls.Config
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, name string, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			DNSNames: []string{name}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, KeyUsage: x509.KeyUsageDigitalSignature,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, _ := x509.MarshalECPrivateKey(key)
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	}
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	srvCert, srvKey := issue(2, "nats.test", x509.ExtKeyUsageServerAuth)
	cliCert, cliKey := issue(3, "craftedge", x509.ExtKeyUsageClientAuth)
	pair, err := tls.X509KeyPair(srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return testPKI{
		caFile:   write("ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})),
		certFile: write("client.pem", cliCert),
		keyFile:  write("client-key.pem", cliKey),
		serverTLS: &tls.Config{
			Certificates: []tls.Certificate{pair}, ClientCAs: pool,
			ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12,
		},
	}
}

// startCustomServer starts a server with opts adjusted by mod.
func startCustomServer(t *testing.T, mod func(*server.Options)) *server.Server {
	t.Helper()
	opts := &server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: t.TempDir(),
		NoLog: true, NoSigs: true, DisableJetStreamBanner: true}
	mod(opts)
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

func TestTLSWithClientCertificate(t *testing.T) {
	pki := newTestPKI(t)
	s := startCustomServer(t, func(o *server.Options) {
		o.TLSConfig = pki.serverTLS
		o.TLSVerify = true
		o.TLSTimeout = 2
	})
	url := "tls://" + s.Addr().String()
	n := startNode(t, Config{NodeName: "a", URLs: []string{url},
		TLS: &TLS{CAFile: pki.caFile, CertFile: pki.certFile, KeyFile: pki.keyFile, ServerName: "nats.test"}}, &recorder{})
	waitState(t, n, StateReady)

	// Without the client certificate the server refuses the node; the
	// node keeps trying and never blocks its caller.
	bad := startNode(t, Config{NodeName: "b", URLs: []string{url}, TLS: &TLS{CAFile: pki.caFile, ServerName: "nats.test"}}, &recorder{})
	bad.Publish(Purge{All: true})
	waitFor(t, "b's connection attempt fails", func() bool { return bad.Stats().LastError != "" })
	if st := bad.Stats(); st.State != StateConnecting || st.Connected || st.Queued != 1 {
		t.Fatalf("node without its certificate: %+v", st)
	}
}

func TestTokenAuth(t *testing.T) {
	s := startCustomServer(t, func(o *server.Options) { o.Authorization = "s3cret-token" })
	url := "nats://" + s.Addr().String()
	n := startNode(t, Config{NodeName: "a", URLs: []string{url}, Auth: Auth{Token: "s3cret-token"}}, &recorder{})
	waitState(t, n, StateReady)
	bad := startNode(t, Config{NodeName: "b", URLs: []string{url}, Auth: Auth{Token: "wrong"}}, &recorder{})
	waitFor(t, "b's connection attempt fails", func() bool { return bad.Stats().LastError != "" })
	if st := bad.Stats(); st.State != StateConnecting || st.Connected {
		t.Fatalf("node with a wrong token: %+v", st)
	}
	t.Logf("b: %s", bad.Stats().LastError)
}

// A JetStream that does not answer while NATS is connected is as
// unavailable as NATS itself: the caller answers 503 and retries later.
func TestErrUnavailable(t *testing.T) {
	for _, err := range []error{
		fmt.Errorf("publish: %w", errNotConnected),
		fmt.Errorf("get: %w", context.DeadlineExceeded),
		fmt.Errorf("get: %w", nats.ErrTimeout),
		fmt.Errorf("get: %w", nats.ErrNoResponders),
		fmt.Errorf("get: %w", jetstream.ErrNoStreamResponse),
		fmt.Errorf("get: %w", jetstream.ErrJetStreamNotEnabled),
		fmt.Errorf("get: %w", &jetstream.APIError{Code: 503, Description: "JetStream system temporarily unavailable"}),
	} {
		if !ErrUnavailable(err) {
			t.Errorf("ErrUnavailable(%v) = false, want true", err)
		}
	}
	for _, err := range []error{nil, errors.New("bad request"), &jetstream.APIError{Code: 400, Description: "invalid"}} {
		if ErrUnavailable(err) {
			t.Errorf("ErrUnavailable(%v) = true, want false", err)
		}
	}
}
