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

// options are the nats.go options of these settings.
func (a NATSAuth) options() ([]nats.Option, error) {
	var opts []nats.Option
	methods := 0
	if a.User != "" || a.Password != "" {
		if a.User == "" || a.Password == "" {
			return nil, errors.New("NATS user and password go together")
		}
		opts = append(opts, nats.UserInfo(a.User, a.Password))
		methods++
	}
	if a.Token != "" {
		opts = append(opts, nats.Token(a.Token))
		methods++
	}
	if a.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(a.CredsFile))
		methods++
	}
	if a.NKeySeedFile != "" {
		opt, err := nats.NkeyOptionFromSeed(a.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("NATS nkey seed: %w", err)
		}
		opts = append(opts, opt)
		methods++
	}
	if methods > 1 {
		return nil, errors.New("give one NATS authentication: user and password, token, creds file or nkey seed")
	}
	if a.CAFile != "" {
		opts = append(opts, nats.RootCAs(a.CAFile))
	}
	if a.CertFile != "" || a.KeyFile != "" {
		if a.CertFile == "" || a.KeyFile == "" {
			return nil, errors.New("NATS client certificate and key go together")
		}
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

// check refuses a listener without authentication, and warns when it
// listens beyond loopback.
func (l EmbeddedListen) check(log *slog.Logger) error {
	if l.Addr == "" {
		return nil
	}
	if (l.User == "" || l.Password == "") && l.Token == "" {
		return errors.New("the embedded NATS listener needs authentication: a user and password, or a token")
	}
	if l.User != "" && l.Token != "" {
		return errors.New("the embedded NATS listener takes a user and password, or a token, not both")
	}
	if !isLoopback(l.Addr) {
		log.Warn("the embedded NATS server listens beyond loopback (without TLS)", "addr", l.Addr)
	}
	return nil
}
