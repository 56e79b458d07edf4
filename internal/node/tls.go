package node

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"

	"google.golang.org/grpc/credentials"
)

// TLSConfig names the files of the gRPC server's TLS.
type TLSConfig struct {
	CertFile string // server certificate chain (PEM); no TLS when empty
	KeyFile  string // its private key (PEM)
	// ClientCAFile, when set, turns on mutual TLS: every client must show
	// a certificate signed by one of these CAs (PEM).
	ClientCAFile string
}

// validate checks that the files go together.
func (c TLSConfig) validate() error {
	switch {
	case (c.CertFile == "") != (c.KeyFile == ""):
		return errors.New("--tls-cert and --tls-key go together")
	case c.ClientCAFile != "" && c.CertFile == "":
		return errors.New("a client CA needs a server certificate and key (--tls-cert, --tls-key)")
	}
	return nil
}

// serverCredentials builds the gRPC server's transport credentials: nil
// (plaintext) when no certificate is given. The config is validated. Plaintext beyond loopback is
// allowed, with a warning.
func serverCredentials(c TLSConfig, listenAddr string, log *slog.Logger) (credentials.TransportCredentials, error) {
	if c.CertFile == "" && c.KeyFile == "" {
		if !isLoopback(listenAddr) {
			log.Warn("gRPC is listening beyond loopback without TLS: calls and their data travel in clear text; set --tls-cert and --tls-key", "addr", listenAddr)
		}
		return nil, nil
	}
	cfg, err := serverTLSConfig(c)
	if err != nil {
		return nil, err
	}
	return credentials.NewTLS(cfg), nil
}

// serverTLSConfig loads the server certificate and, for mutual TLS, the
// client CAs of c, which must name a certificate. The gRPC and HTTP ports
// share them.
func serverTLSConfig(c TLSConfig) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if c.ClientCAFile != "" {
		pem, err := os.ReadFile(c.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("TLS client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("TLS client CA %s holds no PEM certificate", c.ClientCAFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// isLoopback reports whether a listen address only accepts connections
// from this machine.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
