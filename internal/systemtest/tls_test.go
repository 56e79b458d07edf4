package systemtest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/ordersd/ordersd/internal/testsupport"
)

// issuePEM signs a certificate for 127.0.0.1 with one key usage.
func issuePEM(t *testing.T, ca *testsupport.CA, name string, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
	t.Helper()
	pair := ca.Issue(t, testsupport.Leaf{CommonName: name, ExtKeyUsage: []x509.ExtKeyUsage{usage}})
	return pair.CertPEM, pair.KeyPEM
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
	serverCA, clientCA, otherCA := testsupport.NewCA(t, "server CA"), testsupport.NewCA(t, "client CA"), testsupport.NewCA(t, "another CA")
	serverCert, serverKey := issuePEM(t, serverCA, "ordersd", x509.ExtKeyUsageServerAuth)
	ready, _ := runOrdersd(t, t.TempDir(), "--review=false",
		"--tls-cert", writeFile(t, dir, "server.pem", serverCert),
		"--tls-key", writeFile(t, dir, "server-key.pem", serverKey),
		"--tls-client-ca", writeFile(t, dir, "client-ca.pem", clientCA.PEM))
	addr := ready.GRPCAddr.String()

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(serverCA.PEM)
	clientTLS := func(ca *testsupport.CA) credentials.TransportCredentials {
		cfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		if ca != nil {
			certPEM, keyPEM := issuePEM(t, ca, "client", x509.ExtKeyUsageClientAuth)
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
	ca := testsupport.NewCA(t, "server CA")
	cert, key := issuePEM(t, ca, "ordersd", x509.ExtKeyUsageServerAuth)
	ready, _ := runOrdersd(t, t.TempDir(), "--review=false",
		"--tls-cert", writeFile(t, dir, "server.pem", cert), "--tls-key", writeFile(t, dir, "key.pem", key))
	addr := ready.GRPCAddr.String()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.PEM)
	if err := healthCheck(addr, credentials.NewTLS(&tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12})); err != nil {
		t.Fatalf("TLS client: %v", err)
	}
	if err := healthCheck(addr, insecure.NewCredentials()); err == nil {
		t.Fatal("a plaintext client got through a TLS server")
	}
}
