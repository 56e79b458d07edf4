package node

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ordersd/ordersd/internal/natsconn"
)

// validConfig is a config Validate accepts: the embedded server on dataDir,
// loopback ports chosen by the system.
func validConfig(dataDir string) Config {
	return Config{
		GRPCAddr: "127.0.0.1:0", DataDir: dataDir, Replicas: 1,
		DuplicateWindow: time.Minute, OpTimeout: 5 * time.Second, ShutdownTimeout: 5 * time.Second,
		AckTokenKeyFile: "", Limits: DefaultLimits, ReviewConcurrency: DefaultReviewConcurrency,
	}
}

// Validate names the flag to fix in every error, and wraps ErrInvalidConfig.
func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		change func(*Config)
		flag   string // named in the error; "" when the config is valid
	}{
		{"the defaults are valid", func(*Config) {}, ""},
		{"an external deployment needs no data directory", func(c *Config) { c.DataDir, c.NATSURL, c.AckTokenKeyFile = "", "nats://a:4222", "ack.key" }, ""},
		{"an external deployment needs an ack token key", func(c *Config) { c.DataDir, c.NATSURL = "", "nats://a:4222" }, "--ack-token-key-file"},
		{"a cluster needs an ack token key", func(c *Config) {
			c.Cluster = natsconn.EmbeddedCluster{Name: "c", Listen: "127.0.0.1:6222"}
		}, "--ack-token-key-file"},
		{"a cluster on loopback may be plaintext", func(c *Config) {
			c.Cluster, c.AckTokenKeyFile = natsconn.EmbeddedCluster{Name: "c", Listen: "127.0.0.1:6222"}, "ack.key"
		}, ""},
		{"a cluster beyond loopback without TLS is refused", func(c *Config) {
			c.Cluster, c.AckTokenKeyFile = natsconn.EmbeddedCluster{Name: "c", Listen: "0.0.0.0:6222"}, "ack.key"
		}, "--cluster-cert"},
		{"a cluster beyond loopback may be plaintext when insecure on purpose", func(c *Config) {
			c.Cluster, c.AckTokenKeyFile = natsconn.EmbeddedCluster{Name: "c", Listen: "0.0.0.0:6222"}, "ack.key"
			c.ClusterTLS.Insecure = true
		}, ""},
		{"a cluster beyond loopback with TLS", func(c *Config) {
			c.Cluster, c.AckTokenKeyFile = natsconn.EmbeddedCluster{Name: "c", Listen: "10.0.0.1:6222"}, "ack.key"
			c.ClusterTLS = ClusterTLS{CertFile: "r.crt", KeyFile: "r.key", CAFile: "ca.crt"}
		}, ""},
		{"a route certificate needs a CA", func(c *Config) {
			c.Cluster, c.AckTokenKeyFile = natsconn.EmbeddedCluster{Name: "c", Listen: "10.0.0.1:6222"}, "ack.key"
			c.ClusterTLS = ClusterTLS{CertFile: "r.crt", KeyFile: "r.key"}
		}, "--cluster-ca"},
		{"route TLS and insecure routes are refused together", func(c *Config) {
			c.Cluster, c.AckTokenKeyFile = natsconn.EmbeddedCluster{Name: "c", Listen: "10.0.0.1:6222"}, "ack.key"
			c.ClusterTLS = ClusterTLS{CertFile: "r.crt", KeyFile: "r.key", CAFile: "ca.crt", Insecure: true}
		}, "--cluster-insecure"},
		{"a NATS listener certificate needs its key", func(c *Config) {
			c.EmbeddedListen = EmbeddedListen{Addr: "127.0.0.1:4222", Token: "t", CertFile: "n.crt"}
		}, "--nats-listen-key"},
		{"a NATS listener client CA needs a certificate", func(c *Config) {
			c.EmbeddedListen = EmbeddedListen{Addr: "127.0.0.1:4222", Token: "t", ClientCAFile: "ca.crt"}
		}, "--nats-listen-cert"},
		{"JWTs need an issuer", func(c *Config) { c.Auth.JWTPublicKeyFile, c.Auth.Audience = "k.pem", "ordersd" }, "--auth-jwt-issuer"},
		{"an authenticated embedded listener is valid", func(c *Config) { c.EmbeddedListen = EmbeddedListen{Addr: "127.0.0.1:4222", Token: "t"} }, ""},
		{"zero replicas are refused", func(c *Config) { c.Replicas = 0 }, "--replicas"},
		{"six replicas are refused", func(c *Config) { c.Replicas = 6 }, "--replicas"},
		{"a zero duplicate window is refused", func(c *Config) { c.DuplicateWindow = 0 }, "--duplicate-window"},
		{"a negative operation timeout is refused", func(c *Config) { c.OpTimeout = -time.Second }, "--nats-timeout"},
		{"a zero shutdown timeout is refused", func(c *Config) { c.ShutdownTimeout = 0 }, "--shutdown-timeout"},
		{"a negative sync interval is refused", func(c *Config) { c.SyncInterval = -time.Second }, "--sync-interval"},
		{"a tiny message size is refused", func(c *Config) { c.Limits.MaxRecvMsgSize = 100 }, "--max-recv-msg-size"},
		{"no concurrent streams are refused", func(c *Config) { c.Limits.MaxConcurrentStreams = 0 }, "--max-concurrent-streams"},
		{"no watchers are refused", func(c *Config) { c.Limits.MaxWatchers = 0 }, "--max-watchers"},
		{"no consumers are refused", func(c *Config) { c.Limits.MaxConsumers = 0 }, "--max-consumers"},
		{"no reviews in flight are refused", func(c *Config) { c.ReviewConcurrency = 0 }, "--review-concurrency"},
		{"too many reviews in flight are refused", func(c *Config) { c.ReviewConcurrency = 1025 }, "--review-concurrency"},
		{"a negative consumer inactivity threshold is refused", func(c *Config) { c.ConsumerInactiveThreshold = -time.Second }, "--consumer-inactive-threshold"},
		{"a negative durable consumer cap is refused", func(c *Config) { c.MaxDurableConsumers = -1 }, "--max-consumers-durable"},
		{"a negative load-report interval is refused", func(c *Config) { c.LoadReport.MinInterval = -time.Second }, "--orca-min-interval"},
		{"a negative calls capacity is refused", func(c *Config) { c.LoadReport.CallsCapacity = -1 }, "--orca-calls-capacity"},
		{"the embedded server needs a data directory", func(c *Config) { c.DataDir = "" }, "--data-dir"},
		{"a cluster name needs a cluster listener", func(c *Config) { c.Cluster, c.AckTokenKeyFile = natsconn.EmbeddedCluster{Name: "c"}, "ack.key" }, "--cluster-listen"},
		{"an unauthenticated embedded listener is refused", func(c *Config) { c.EmbeddedListen.Addr = "127.0.0.1:4222" }, "--nats-listen"},
		{"a listener user and a token are refused together", func(c *Config) {
			c.EmbeddedListen = EmbeddedListen{Addr: "127.0.0.1:4222", User: "u", Password: "p", Token: "t"}
		}, "--nats-listen-token"},
		{"a TLS certificate needs its key", func(c *Config) { c.TLS.CertFile = "cert.pem" }, "--tls-key"},
		{"a client CA needs a server certificate", func(c *Config) { c.TLS.ClientCAFile = "ca.pem" }, "--tls-cert"},
		{"a NATS user needs a password", func(c *Config) { c.NATSURL, c.NATSAuth.User, c.AckTokenKeyFile = "nats://a:4222", "u", "ack.key" }, "--nats-password"},
		{"two NATS authentications are refused", func(c *Config) {
			c.NATSURL, c.NATSAuth, c.AckTokenKeyFile = "nats://a:4222", NATSAuth{Token: "t", CredsFile: "x.creds"}, "ack.key"
		}, "--nats-creds"},
		{"a NATS client certificate needs its key", func(c *Config) {
			c.NATSURL, c.NATSAuth.CertFile, c.AckTokenKeyFile = "nats://a:4222", "c.pem", "ack.key"
		}, "--nats-key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := validConfig("/nonexistent/ordersd")
			tc.change(&cfg)
			err := cfg.Validate()
			switch {
			case tc.flag == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.flag != "" && (!errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.flag)):
				t.Fatalf("Validate = %v; want ErrInvalidConfig naming %s", err, tc.flag)
			}
		})
	}
}
