package node

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go"

	"github.com/ordersd/ordersd/internal/tlsfiles"
)

// NATSAuth are the credentials and TLS settings for --nats-url.
type NATSAuth struct {
	User, Password string // user and password
	Token          string // or a token
	CredsFile      string // or a .creds file (user JWT and nkey seed)
	NKeySeedFile   string // or an nkey seed file
	CAFile         string // CA certificates to verify the servers (PEM)
	CertFile       string // client certificate for mutual TLS (PEM)
	KeyFile        string // its key (PEM)
}

// validate checks that the settings go together: at most one way to
// authenticate, and each pair complete.
func (a NATSAuth) validate() error {
	methods := 0
	if a.User != "" || a.Password != "" {
		if a.User == "" || a.Password == "" {
			return errors.New("--nats-user and --nats-password go together")
		}
		methods++
	}
	for _, set := range []string{a.Token, a.CredsFile, a.NKeySeedFile} {
		if set != "" {
			methods++
		}
	}
	if methods > 1 {
		return errors.New("give one NATS authentication: --nats-user and --nats-password, --nats-token, --nats-creds or --nats-nkey")
	}
	if (a.CertFile == "") != (a.KeyFile == "") {
		return errors.New("--nats-cert and --nats-key go together")
	}
	return nil
}

// tlsFiles reads the CA bundle and client certificate (nil when neither
// is given), so that they can be reloaded.
func (a NATSAuth) tlsFiles() (*tlsfiles.Files, error) {
	if a.CAFile == "" && a.CertFile == "" {
		return nil, nil
	}
	return tlsfiles.Load("NATS client", a.CertFile, a.KeyFile, a.CAFile)
}

// options are the nats.go options of these settings, which are validated;
// files, when not nil, holds their TLS files.
func (a NATSAuth) options(files *tlsfiles.Files) ([]nats.Option, error) {
	var opts []nats.Option
	if a.User != "" {
		opts = append(opts, nats.UserInfo(a.User, a.Password))
	}
	if a.Token != "" {
		opts = append(opts, nats.Token(a.Token))
	}
	if a.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(a.CredsFile))
	}
	if a.NKeySeedFile != "" {
		opt, err := nats.NkeyOptionFromSeed(a.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("NATS nkey seed: %w", err)
		}
		opts = append(opts, opt)
	}
	if files != nil {
		// nats.go asks at every (re)connection: a reloaded certificate is
		// used from the next one, and the connection up keeps running.
		var certCB nats.TLSCertHandler
		var rootsCB nats.RootCAsHandler
		if a.CertFile != "" {
			certCB = func() (tls.Certificate, error) { return *files.Certificate(), nil }
		}
		if a.CAFile != "" {
			rootsCB = func() (*x509.CertPool, error) { return files.Roots(), nil }
		}
		opts = append(opts, nats.ClientTLSConfig(certCB, rootsCB))
	}
	return opts, nil
}

// EmbeddedListen opens the embedded NATS server to NATS clients (the nats
// CLI, other services), always with authentication, and with TLS when
// given a certificate. Its user reads the streams (natsconn.ReaderPermissions)
// unless given full access.
type EmbeddedListen struct {
	Addr           string // host:port; no listener when empty
	User, Password string // the one user allowed in
	Token          string // or a token
	Access         string // ListenRead (the default when empty) or ListenFull (--nats-listen-access)
	CertFile       string // the listener's certificate (PEM); clients must use TLS (--nats-listen-cert)
	KeyFile        string // its key (--nats-listen-key)
	ClientCAFile   string // CAs of client certificates: clients must show one (--nats-listen-client-ca)
}

// The access of the listener's user (--nats-listen-access).
const (
	// ListenRead: look up and read the streams, consume from them; no
	// publish on the order subjects, no purge, no delete.
	ListenRead = "read"
	// ListenFull: every right, ordersd's own included: what another
	// ordersd node (--nats-url) or a writer of ORDERS.> needs.
	ListenFull = "full"
)

// access is the listener user's access, ListenRead when unset.
func (l EmbeddedListen) access() string {
	if l.Access == "" {
		return ListenRead
	}
	return l.Access
}

// validate refuses a listener without authentication.
func (l EmbeddedListen) validate() error {
	if l.Access != "" && l.Access != ListenRead && l.Access != ListenFull {
		return fmt.Errorf("--nats-listen-access must be %q or %q, got %q", ListenRead, ListenFull, l.Access)
	}
	if l.Addr == "" {
		return nil
	}
	if (l.User == "" || l.Password == "") && l.Token == "" {
		return errors.New("the embedded NATS listener (--nats-listen) needs authentication: --nats-listen-user and --nats-listen-password, or --nats-listen-token")
	}
	if l.User != "" && l.Token != "" {
		return errors.New("the embedded NATS listener takes --nats-listen-user and --nats-listen-password, or --nats-listen-token, not both")
	}
	if (l.CertFile == "") != (l.KeyFile == "") {
		return errors.New("--nats-listen-cert and --nats-listen-key go together")
	}
	if l.ClientCAFile != "" && l.CertFile == "" {
		return errors.New("--nats-listen-client-ca needs --nats-listen-cert and --nats-listen-key")
	}
	return nil
}

// tlsFiles reads the listener's certificate and client CAs (nil without
// TLS), warning when it listens beyond loopback without TLS.
func (l EmbeddedListen) tlsFiles(log *slog.Logger) (*tlsfiles.Files, error) {
	if l.Addr == "" {
		return nil, nil
	}
	if l.CertFile == "" {
		if !isLoopback(l.Addr) {
			log.Warn("the embedded NATS server listens beyond loopback without TLS: credentials and events travel in clear text; set --nats-listen-cert and --nats-listen-key", "addr", l.Addr)
		}
		return nil, nil
	}
	return tlsfiles.Load("embedded NATS listener", l.CertFile, l.KeyFile, l.ClientCAFile)
}
