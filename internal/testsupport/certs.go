package testsupport

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"

	"github.com/ordersd/ordersd/internal/certgen"
)

// CA is a certificate authority made for one test: it signs the server,
// client and route certificates of the test's servers, so that no test
// depends on certificates checked into the repository (which expire).
type CA struct{ *certgen.CA }

// Leaf describes a certificate for CA.Issue (see certgen.Leaf).
type Leaf = certgen.Leaf

// Pair is an issued certificate and its key, in PEM.
type Pair struct{ certgen.Pair }

// NewCA makes a CA named name.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	ca, err := certgen.NewCA(name)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{ca}
}

// Issue signs a certificate described by l.
func (ca *CA) Issue(t testing.TB, l Leaf) Pair {
	t.Helper()
	p, err := ca.CA.Issue(l)
	if err != nil {
		t.Fatal(err)
	}
	return Pair{p}
}

// WriteCA writes the CA certificate to dir/name and returns the path.
func (ca *CA) WriteCA(t testing.TB, dir, name string) string {
	t.Helper()
	return WriteFile(t, dir, name, ca.PEM)
}

// TLS is the pair as a tls.Certificate.
func (p Pair) TLS(t testing.TB) tls.Certificate {
	t.Helper()
	c, err := p.Pair.TLS()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Write writes the pair to dir as <name>.crt and <name>.key and returns
// their paths.
func (p Pair) Write(t testing.TB, dir, name string) (certFile, keyFile string) {
	t.Helper()
	return WriteFile(t, dir, name+".crt", p.CertPEM), WriteFile(t, dir, name+".key", p.KeyPEM)
}

// WriteFile writes data to dir/name (mode 0600) and returns the path.
func WriteFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// ReplaceFile replaces path with data in one step (a write to a
// temporary file, then a rename), as configuration managers and
// Kubernetes do, so that a reader never sees half a file.
func ReplaceFile(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
