// Package tlsfiles holds TLS material read from files (a certificate and
// its key, a CA bundle) that can be read again while connections are open.
// The tls.Configs it hands out look the material up at each handshake, so
// a rotated certificate is used by the next connection and established
// connections (and the gRPC streams on them) keep running.
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"
)

// Files is a certificate and key, a CA bundle, or both, read from files.
// Reload reads them again; a set that does not load is refused whole and
// the one in use is kept.
type Files struct {
	name                      string // what the files are for, in errors: "gRPC server", "cluster routes"
	certFile, keyFile, caFile string

	cert  atomic.Pointer[tls.Certificate] // nil without certFile
	roots atomic.Pointer[x509.CertPool]   // nil without caFile
}

// Load reads the files (certFile and keyFile go together; any may be
// empty) for the purpose name.
func Load(name, certFile, keyFile, caFile string) (*Files, error) {
	if (certFile == "") != (keyFile == "") {
		return nil, fmt.Errorf("%s: a certificate and its key go together", name)
	}
	f := &Files{name: name, certFile: certFile, keyFile: keyFile, caFile: caFile}
	if err := f.Reload(); err != nil {
		return nil, err
	}
	return f, nil
}

// Name is what the files are for.
func (f *Files) Name() string { return f.name }

// Paths are the files read.
func (f *Files) Paths() []string {
	var paths []string
	for _, p := range []string{f.certFile, f.keyFile, f.caFile} {
		if p != "" {
			paths = append(paths, p)
		}
	}
	return paths
}

// Reload reads the files again and, when all of them load, puts them in
// use for the next handshakes. Otherwise it returns why and keeps the
// material in use: a certificate whose key does not match (as between the
// writes of a rotation that replaces the two files one after the other),
// an expired certificate, or a CA file without a certificate.
func (f *Files) Reload() error {
	var cert *tls.Certificate
	if f.certFile != "" {
		c, err := tls.LoadX509KeyPair(f.certFile, f.keyFile)
		if err != nil {
			return fmt.Errorf("%s certificate %s: %w", f.name, f.certFile, err)
		}
		if now := time.Now(); now.After(c.Leaf.NotAfter) {
			return fmt.Errorf("%s certificate %s expired at %s", f.name, f.certFile, c.Leaf.NotAfter.Format(time.RFC3339))
		}
		cert = &c
	}
	var pool *x509.CertPool
	if f.caFile != "" {
		pem, err := os.ReadFile(f.caFile)
		if err != nil {
			return fmt.Errorf("%s CA: %w", f.name, err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("%s CA %s holds no PEM certificate", f.name, f.caFile)
		}
	}
	if cert != nil {
		f.cert.Store(cert)
	}
	if pool != nil {
		f.roots.Store(pool)
	}
	return nil
}

// Certificate is the certificate in use (nil without a certificate file).
func (f *Files) Certificate() *tls.Certificate { return f.cert.Load() }

// Roots are the CAs in use (nil without a CA file).
func (f *Files) Roots() *x509.CertPool { return f.roots.Load() }

// ServerConfig is the TLS of a listener: it shows the current certificate
// and, with a CA bundle, requires a client certificate signed by one of
// the current CAs (mutual TLS).
func (f *Files) ServerConfig() *tls.Config {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return f.serverConfig(), nil
		},
	}
	if f.caFile != "" {
		// Read by those that only look (nats-server tells its clients that
		// it verifies them); the handshake uses serverConfig.
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg
}

func (f *Files) serverConfig() *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c := f.cert.Load(); c != nil {
		cfg.Certificates = []tls.Certificate{*c}
	}
	if pool := f.roots.Load(); pool != nil {
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg
}

// ClientConfig is the TLS of a connection this process opens: it shows
// the current certificate when the server asks for one and, with a CA
// bundle, verifies the server's chain and name against the current CAs.
// Without a CA bundle the system's roots verify the server.
func (f *Files) ClientConfig() *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if f.certFile != "" {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return f.cert.Load(), nil
		}
	}
	if f.caFile != "" {
		// crypto/tls reads RootCAs once per config; to verify against the
		// CAs of the moment, the chain and name are checked here instead,
		// as crypto/tls would (go-spiffe's tlsconfig does the same).
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = f.verifyServer
	}
	return cfg
}

// MutualConfig is both sides of a connection between peers (cluster
// routes): ServerConfig for the connections it accepts, ClientConfig for
// those it opens. It needs a certificate and a CA bundle.
func (f *Files) MutualConfig() *tls.Config {
	cfg := f.ClientConfig()
	server := f.ServerConfig()
	cfg.GetConfigForClient, cfg.ClientAuth = server.GetConfigForClient, server.ClientAuth
	return cfg
}

// errNoServerCertificate is returned when a server shows no certificate.
var errNoServerCertificate = errors.New("the server showed no certificate")

func (f *Files) verifyServer(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errNoServerCertificate
	}
	opts := x509.VerifyOptions{
		Roots:         f.roots.Load(),
		DNSName:       cs.ServerName,
		Intermediates: x509.NewCertPool(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
		return fmt.Errorf("%s: %w", f.name, err)
	}
	return nil
}
