package tlsfiles

import (
	"bytes"
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/ordersd/ordersd/internal/testsupport"
)

// A reload takes a new certificate and CA bundle whole, and refuses a set
// that does not load, keeping the one in use.
func TestReloadRefusesWhatDoesNotLoad(t *testing.T) {
	dir := t.TempDir()
	ca := testsupport.NewCA(t, "CA")
	first := ca.Issue(t, testsupport.Leaf{CommonName: "first"})
	certFile, keyFile := first.Write(t, dir, "server")
	caFile := ca.WriteCA(t, dir, "ca.crt")
	f, err := Load("test", certFile, keyFile, caFile)
	if err != nil {
		t.Fatal(err)
	}
	inUse := func() string { return f.Certificate().Leaf.Subject.CommonName }

	other := ca.Issue(t, testsupport.Leaf{CommonName: "other"})
	expired := ca.Issue(t, testsupport.Leaf{CommonName: "expired", NotAfter: time.Now().Add(-time.Minute)})
	for _, tc := range []struct {
		name       string
		cert, key  []byte
		caPEM      []byte
		wantReason string
	}{
		{"a key that does not match the certificate", other.CertPEM, first.KeyPEM, ca.PEM, "private key does not match"},
		{"a file that is no certificate", []byte("junk"), first.KeyPEM, ca.PEM, "certificate"},
		{"a CA file without a certificate", first.CertPEM, first.KeyPEM, []byte("junk"), "no PEM certificate"},
		{"an expired certificate", expired.CertPEM, expired.KeyPEM, ca.PEM, "expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testsupport.ReplaceFile(t, certFile, tc.cert)
			testsupport.ReplaceFile(t, keyFile, tc.key)
			testsupport.ReplaceFile(t, caFile, tc.caPEM)
			err := f.Reload()
			if err == nil || !strings.Contains(err.Error(), tc.wantReason) {
				t.Fatalf("Reload: %v, want it refused (%q)", err, tc.wantReason)
			}
			if inUse() != "first" {
				t.Fatalf("certificate in use: %q, want the first kept", inUse())
			}
		})
	}
	testsupport.ReplaceFile(t, certFile, other.CertPEM)
	testsupport.ReplaceFile(t, keyFile, other.KeyPEM)
	testsupport.ReplaceFile(t, caFile, ca.PEM)
	if err := f.Reload(); err != nil {
		t.Fatal(err)
	}
	if inUse() != "other" {
		t.Fatalf("certificate in use after a good reload: %q", inUse())
	}
	// The configs handed out before the reload use the new certificate.
	got, err := f.ServerConfig().GetConfigForClient(&tls.ClientHelloInfo{})
	if err != nil || !bytes.Equal(got.Certificates[0].Certificate[0], f.Certificate().Certificate[0]) {
		t.Fatalf("ServerConfig after a reload: %v, not the new certificate", err)
	}
}
