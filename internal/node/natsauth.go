package node

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go"
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

// options are the nats.go options of these settings, which are validated.
func (a NATSAuth) options() ([]nats.Option, error) {
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
	if a.CAFile != "" {
		opts = append(opts, nats.RootCAs(a.CAFile))
	}
	if a.CertFile != "" {
		opts = append(opts, nats.ClientCert(a.CertFile, a.KeyFile))
	}
	return opts, nil
}

// EmbeddedListen opens the embedded NATS server to NATS clients (the nats
// CLI, other services), always with authentication.
type EmbeddedListen struct {
	Addr           string // host:port; no listener when empty
	User, Password string // the one user allowed in
	Token          string // or a token
}

// validate refuses a listener without authentication.
func (l EmbeddedListen) validate() error {
	if l.Addr == "" {
		return nil
	}
	if (l.User == "" || l.Password == "") && l.Token == "" {
		return errors.New("the embedded NATS listener (--nats-listen) needs authentication: --nats-listen-user and --nats-listen-password, or --nats-listen-token")
	}
	if l.User != "" && l.Token != "" {
		return errors.New("the embedded NATS listener takes --nats-listen-user and --nats-listen-password, or --nats-listen-token, not both")
	}
	return nil
}

// warn warns when the listener listens beyond loopback.
func (l EmbeddedListen) warn(log *slog.Logger) {
	if l.Addr != "" && !isLoopback(l.Addr) {
		log.Warn("the embedded NATS server listens beyond loopback (without TLS)", "addr", l.Addr)
	}
}
