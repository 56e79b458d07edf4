package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue signs a leaf certificate for 127.0.0.1, for servers or clients.
func (ca *testCA) issue(t *testing.T, name string, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// healthCheck makes one call with the given transport credentials.
func healthCheck(addr string, creds credentials.TransportCredentials) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

// With mutual TLS, a client must trust the server's CA and show a
// certificate from the client CA: without one, with one from another CA, or
// in plaintext, it is refused; with one, it gets through.
func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	serverCA, clientCA, otherCA := newTestCA(t, "server CA"), newTestCA(t, "client CA"), newTestCA(t, "another CA")
	serverCert, serverKey := serverCA.issue(t, "ordersd", x509.ExtKeyUsageServerAuth)
	ready, _ := runOrdersd(t, t.TempDir(), "--review=false",
		"--tls-cert", writeFile(t, dir, "server.pem", serverCert),
		"--tls-key", writeFile(t, dir, "server-key.pem", serverKey),
		"--tls-client-ca", writeFile(t, dir, "client-ca.pem", clientCA.pem))
	addr := ready.GRPCAddr.String()

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(serverCA.pem)
	clientTLS := func(ca *testCA) credentials.TransportCredentials {
		cfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		if ca != nil {
			certPEM, keyPEM := ca.issue(t, "client", x509.ExtKeyUsageClientAuth)
			pair, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Certificates = []tls.Certificate{pair}
		}
		return credentials.NewTLS(cfg)
	}
	for name, creds := range map[string]credentials.TransportCredentials{
		"plaintext":                      insecure.NewCredentials(),
		"TLS without a client cert":      clientTLS(nil),
		"a client cert from another CA":  clientTLS(otherCA),
		"not trusting the server's cert": credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12}),
	} {
		if err := healthCheck(addr, creds); err == nil {
			t.Errorf("%s: the call went through", name)
		}
	}
	if err := healthCheck(addr, clientTLS(clientCA)); err != nil {
		t.Fatalf("with a client certificate: %v", err)
	}
}

// With TLS but no client CA, any client that trusts the server gets in.
func TestServerTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, "server CA")
	cert, key := ca.issue(t, "ordersd", x509.ExtKeyUsageServerAuth)
	ready, _ := runOrdersd(t, t.TempDir(), "--review=false",
		"--tls-cert", writeFile(t, dir, "server.pem", cert), "--tls-key", writeFile(t, dir, "key.pem", key))
	addr := ready.GRPCAddr.String()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.pem)
	if err := healthCheck(addr, credentials.NewTLS(&tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12})); err != nil {
		t.Fatalf("TLS client: %v", err)
	}
	if err := healthCheck(addr, insecure.NewCredentials()); err == nil {
		t.Fatal("a plaintext client got through a TLS server")
	}
}
