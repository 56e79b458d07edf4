package node

import (
	"errors"
	"log/slog"
	"net"

	"google.golang.org/grpc/credentials"

	"github.com/ordersd/ordersd/internal/tlsfiles"
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

// serverCredentials builds the gRPC server's transport credentials and
// the files they read (to reload): nil (plaintext) when no certificate is
// given. The config is validated. Plaintext beyond loopback is allowed,
// with a warning.
func serverCredentials(c TLSConfig, listenAddr string, log *slog.Logger) (credentials.TransportCredentials, *tlsfiles.Files, error) {
	if c.CertFile == "" && c.KeyFile == "" {
		if !isLoopback(listenAddr) {
			log.Warn("gRPC is listening beyond loopback without TLS: calls and their data travel in clear text; set --tls-cert and --tls-key", "addr", listenAddr)
		}
		return nil, nil, nil
	}
	files, err := tlsfiles.Load("gRPC server", c.CertFile, c.KeyFile, c.ClientCAFile)
	if err != nil {
		return nil, nil, err
	}
	return credentials.NewTLS(files.ServerConfig()), files, nil
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
