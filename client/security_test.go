package client_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ordersd/ordersd/client"
	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/auth"
	"github.com/ordersd/ordersd/internal/node"
	"github.com/ordersd/ordersd/internal/testsupport"
	"github.com/ordersd/ordersd/internal/testsupport/testnode"
)

// testPKI writes a CA, a server certificate for 127.0.0.1 and a client
// certificate, all signed by the CA, into dir.
type testPKI struct{ caFile, serverCert, serverKey, clientCert, clientKey string }

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	issue := func(name string, serial int64, usage x509.ExtKeyUsage) (string, string) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return write(name+".pem", "CERTIFICATE", der), write(name+".key", "PRIVATE KEY", keyDER)
	}
	p := testPKI{caFile: write("ca.pem", "CERTIFICATE", caDER)}
	p.serverCert, p.serverKey = issue("server", 2, x509.ExtKeyUsageServerAuth)
	p.clientCert, p.clientKey = issue("client", 3, x509.ExtKeyUsageClientAuth)
	return p
}

// A node with mutual TLS and bearer tokens is called with the CA, a
// client certificate and a token; a client missing any of them is refused,
// and a token is never sent in plaintext.
func TestMutualTLSAndBearerTokens(t *testing.T) {
	pki := newTestPKI(t)
	const token = "shop-secret"
	sum := sha256.Sum256([]byte(token))
	tokens := filepath.Join(t.TempDir(), "tokens.json")
	if err := os.WriteFile(tokens, fmt.Appendf(nil, `{"tokens": [{"identity": "shop", "token_sha256": %q, "permissions": ["write", "read"]}]}`, hex.EncodeToString(sum[:])), 0o600); err != nil {
		t.Fatal(err)
	}
	n := testnode.StartT(t, testnode.Options{
		TLS:  node.TLSConfig{CertFile: pki.serverCert, KeyFile: pki.serverKey, ClientCAFile: pki.caFile},
		Auth: auth.Config{TokensFile: tokens},
	})
	create := func(opts ...client.Option) error {
		c, err := client.Dial(n.Addr(), opts...)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.CreateOrder(testsupport.Context(t, 5*time.Second), &ordersv1.CreateOrderRequest{CustomerId: "tls", CurrencyCode: "EUR",
			Items: []*ordersv1.LineItem{{Sku: "S", Quantity: 1}}})
		return err
	}
	mtls := []client.Option{client.WithCAFile(pki.caFile), client.WithClientCertificateFiles(pki.clientCert, pki.clientKey)}
	if err := create(append(mtls, client.WithBearerToken(token))...); err != nil {
		t.Fatalf("with the CA, a client certificate and a token: %v", err)
	}
	// The certificate alone authenticates the client (as its CN), which
	// the tokens file grants nothing.
	if err := create(mtls...); status.Code(err) != codes.PermissionDenied {
		t.Errorf("without a token: %v, want PERMISSION_DENIED", err)
	}
	if err := create(client.WithCAFile(pki.caFile), client.WithBearerToken(token)); status.Code(err) != codes.Unavailable {
		t.Errorf("without a client certificate: %v, want UNAVAILABLE (the handshake fails)", err)
	}
	if err := create(client.WithClientCertificateFiles(pki.clientCert, pki.clientKey), client.WithBearerToken(token)); status.Code(err) != codes.Unavailable {
		t.Errorf("without the CA (system roots): %v, want UNAVAILABLE (the server is not trusted)", err)
	}
	if err := create(client.WithInsecure(), client.WithBearerToken(token)); !errors.Is(err, client.ErrInvalidOption) {
		t.Errorf("a token over plaintext: %v, want ErrInvalidOption", err)
	}
}
