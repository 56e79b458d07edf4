package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
)

// ErrInvalidOption is wrapped by the error of Dial when an option is
// malformed or at odds with another.
var ErrInvalidOption = errors.New("invalid client option")

// Keepalive defaults: ping a connection idle for 20 s and drop it when the
// ping is not answered within 10 s, so a node that vanished without closing
// its connections (power loss, a partition) is noticed and its calls move
// to another node. ordersd accepts pings every 10 s or more rarely; a
// client that pings more often is disconnected.
var defaultKeepalive = keepalive.ClientParameters{Time: 20 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}

// Option configures Dial.
type Option func(*options) error

type options struct {
	insecure    bool
	tlsConfig   *tls.Config
	caFile      string
	certFile    string
	keyFile     string
	creds       credentials.TransportCredentials
	token       func(context.Context) (string, error)
	balancer    Balancer
	keepalive   keepalive.ClientParameters
	log         *slog.Logger
	dialOptions []grpc.DialOption
}

// WithInsecure sends calls in plaintext, for a node on loopback or behind a
// sidecar that encrypts. Without it (or another transport option) Dial uses
// TLS with the system's roots.
func WithInsecure() Option {
	return func(o *options) error { o.insecure = true; return nil }
}

// WithTLSConfig uses cfg for TLS: its RootCAs verify the nodes, its
// Certificates (or GetClientCertificate) are offered for mutual TLS.
func WithTLSConfig(cfg *tls.Config) Option {
	return func(o *options) error {
		if cfg == nil {
			return fmt.Errorf("%w: WithTLSConfig(nil)", ErrInvalidOption)
		}
		o.tlsConfig = cfg.Clone()
		return nil
	}
}

// WithCAFile verifies the nodes' certificates with the CA certificates
// (PEM) in path instead of the system's roots: what ordersd --tls-cert is
// signed by.
func WithCAFile(path string) Option {
	return func(o *options) error { o.caFile = path; return nil }
}

// WithClientCertificateFiles offers the certificate chain and key (PEM) for
// mutual TLS, to a node run with --tls-client-ca.
func WithClientCertificateFiles(certFile, keyFile string) Option {
	return func(o *options) error {
		if certFile == "" || keyFile == "" {
			return fmt.Errorf("%w: WithClientCertificateFiles needs both a certificate and a key", ErrInvalidOption)
		}
		o.certFile, o.keyFile = certFile, keyFile
		return nil
	}
}

// WithTransportCredentials uses creds for the connection, such as the xDS
// credentials of a mesh (see package client/xds). It excludes the other
// transport options.
func WithTransportCredentials(creds credentials.TransportCredentials) Option {
	return func(o *options) error {
		if creds == nil {
			return fmt.Errorf("%w: WithTransportCredentials(nil)", ErrInvalidOption)
		}
		o.creds = creds
		return nil
	}
}

// WithBearerToken sends "authorization: Bearer <token>" with every call.
// Tokens go only over TLS: Dial refuses it together with WithInsecure.
func WithBearerToken(token string) Option {
	return func(o *options) error {
		if token == "" {
			return fmt.Errorf("%w: empty bearer token", ErrInvalidOption)
		}
		o.token = func(context.Context) (string, error) { return token, nil }
		return nil
	}
}

// WithTokenSource is WithBearerToken with a token fetched for each call,
// such as a JWT that source renews before it expires. An error of source
// fails the call with UNAVAILABLE.
func WithTokenSource(source func(ctx context.Context) (string, error)) Option {
	return func(o *options) error {
		if source == nil {
			return fmt.Errorf("%w: WithTokenSource(nil)", ErrInvalidOption)
		}
		o.token = source
		return nil
	}
}

// WithBalancer picks how calls spread across nodes (RoundRobin by default).
func WithBalancer(b Balancer) Option {
	return func(o *options) error {
		if _, ok := balancerConfigs[b]; !ok {
			return fmt.Errorf("%w: unknown balancer %q", ErrInvalidOption, b)
		}
		o.balancer = b
		return nil
	}
}

// WithKeepalive replaces the keepalive parameters (ping after 20 s idle,
// drop after 10 s without an answer). ordersd drops clients that ping more
// often than every 10 s.
func WithKeepalive(p keepalive.ClientParameters) Option {
	return func(o *options) error {
		if p.Time < 10*time.Second {
			return fmt.Errorf("%w: keepalive time %s is below the 10s ordersd allows", ErrInvalidOption, p.Time)
		}
		o.keepalive = p
		return nil
	}
}

// WithLogger receives what the helpers do not return: reconnects of
// Consume and Watch, acks JetStream did not confirm. Nothing is logged
// without it.
func WithLogger(log *slog.Logger) Option {
	return func(o *options) error {
		if log == nil {
			return fmt.Errorf("%w: WithLogger(nil)", ErrInvalidOption)
		}
		o.log = log
		return nil
	}
}

// WithDialOptions adds gRPC dial options after the client's own (stats
// handlers, interceptors, a custom dialer).
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) error { o.dialOptions = append(o.dialOptions, opts...); return nil }
}

// transportCredentials builds the connection's security from the options.
func (o *options) transportCredentials() (credentials.TransportCredentials, error) {
	custom := o.tlsConfig != nil || o.caFile != "" || o.certFile != ""
	switch {
	case o.creds != nil && (o.insecure || custom):
		return nil, fmt.Errorf("%w: WithTransportCredentials excludes the other transport options", ErrInvalidOption)
	case o.creds != nil:
		return o.creds, nil
	case o.insecure && custom:
		return nil, fmt.Errorf("%w: WithInsecure excludes TLS options", ErrInvalidOption)
	case o.insecure && o.token != nil:
		return nil, fmt.Errorf("%w: bearer tokens are sent only over TLS; drop WithInsecure", ErrInvalidOption)
	case o.insecure:
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.tlsConfig != nil {
		cfg = o.tlsConfig
	}
	if o.caFile != "" {
		pem, err := os.ReadFile(o.caFile)
		if err != nil {
			return nil, fmt.Errorf("%w: CA file: %w", ErrInvalidOption, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: CA file %s holds no PEM certificate", ErrInvalidOption, o.caFile)
		}
		cfg.RootCAs = pool
	}
	if o.certFile != "" {
		cert, err := tls.LoadX509KeyPair(o.certFile, o.keyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: client certificate: %w", ErrInvalidOption, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return credentials.NewTLS(cfg), nil
}
