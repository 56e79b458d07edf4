package cli

import (
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ordersd/ordersd/internal/node"
)

func TestConfigFromFlagsAndEnvironment(t *testing.T) {
	env := map[string]string{"ORDERSD_GRPC_ADDR": "127.0.0.1:6000", "ORDERSD_REPLICAS": "3", "ORDERSD_NATS_URL": "nats://a:4222,nats://b:4222", "ORDERSD_ACK_TOKEN_KEY_FILE": "ack.key"}
	cfg, err := ParseConfig([]string{"--replicas", "1"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.GRPCAddr != "127.0.0.1:6000" || cfg.Replicas != 1 || cfg.NATSURL != "nats://a:4222,nats://b:4222" {
		t.Fatalf("got %+v: the flag must win over the environment, the environment over defaults", cfg)
	}
	// Each refused for its own reason: the error names what is wrong, so
	// that a case cannot pass through another mistake. (A bad --log-format
	// is refused by newLogger, not parseConfig; see below.)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--replicas", "0"}, "--replicas must be 1 to 5"},
		{[]string{"--nats-timeout", "-1s"}, "must be positive"},
		{[]string{"--log-format", "json", "extra"}, `unexpected argument "extra"`},
		{[]string{"--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"--cluster-name", "orders", "--ack-token-key-file", "ack.key"}, "--cluster-name and --cluster-listen go together"},
		{[]string{"--nats-url", "nats://a:4222"}, "--ack-token-key-file is required"},
		{[]string{"--cluster-name", "orders", "--cluster-listen", "127.0.0.1:6222"}, "--ack-token-key-file is required"},
		{[]string{"--cluster-name", "orders", "--cluster-listen", "0.0.0.0:6222", "--ack-token-key-file", "ack.key"}, "beyond loopback without TLS"},
		{[]string{"--auth-jwks-url", "https://idp.example/jwks", "--auth-jwt-audience", "ordersd"}, "--auth-jwt-issuer"},
		{[]string{"--sync-interval", "0s"}, "--sync-interval must be a positive duration"},
		{[]string{"--http-cors-origins", "https://a.example.com,app.example.com"}, `--http-cors-origins: "app.example.com" is not an origin`},
	} {
		_, err := ParseConfig(tc.args, func(string) string { return "" }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error saying %q", tc.args, err, tc.want)
		}
	}
	// A well-formed --log-format passes parseConfig; only newLogger judges it.
	cfg, err = ParseConfig([]string{"--log-format", "xml"}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatalf("--log-format xml refused by parseConfig: %v", err)
	}
	if _, err := newLogger(cfg.logLevel, cfg.logFormat, io.Discard); err == nil || !strings.Contains(err.Error(), "--log-format must be text or json") {
		t.Errorf("--log-format xml: %v, want it refused", err)
	}
	if _, err := newLogger("loud", "text", io.Discard); err == nil || !strings.Contains(err.Error(), "--log-level") {
		t.Errorf("--log-level loud: %v, want it refused", err)
	}
	if _, err := ParseConfig(nil, func(k string) string {
		if k == "ORDERSD_REPLICAS" {
			return "many"
		}
		return ""
	}, io.Discard); err == nil || !strings.Contains(err.Error(), "$ORDERSD_REPLICAS") {
		t.Errorf("a malformed environment variable: %v, want it refused by name", err)
	}
}

// With --xds the HTTP port is off unless asked for, and asking for it is
// refused: calls there would bypass the listener policy of the mesh.
func TestXDSTurnsTheHTTPPortOff(t *testing.T) {
	noEnv := func(string) string { return "" }
	cfg, err := ParseConfig([]string{"--xds", "--data-dir", t.TempDir()}, noEnv, io.Discard)
	if err != nil || cfg.HTTPAddr != "" {
		t.Fatalf("--xds: HTTP address %q, %v; want off", cfg.HTTPAddr, err)
	}
	_, err = ParseConfig([]string{"--xds", "--http-addr", "127.0.0.1:8080", "--data-dir", t.TempDir()}, noEnv, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--http-addr cannot be used with --xds") {
		t.Fatalf("--xds with --http-addr: %v", err)
	}
	cfg, err = ParseConfig([]string{"--data-dir", t.TempDir()}, noEnv, io.Discard)
	if err != nil || cfg.HTTPAddr == "" {
		t.Fatalf("without --xds the HTTP port is on by default: %q, %v", cfg.HTTPAddr, err)
	}
}

// The embedded NATS server refuses to open a listener without
// authentication, or with two kinds of it: the configuration is refused
// with the error that says why, and nothing listens on the address. The
// port is a free one, so that a failure of another kind (a port taken)
// fails the test instead of passing it.
func TestEmbeddedNATSListenerNeedsAuthentication(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		flags      []string
	}{
		{"no credentials", "needs authentication", nil},
		{"a user without a password", "needs authentication", []string{"--nats-listen-user", "admin"}},
		{"a user and a token", "not both", []string{"--nats-listen-user", "admin", "--nats-listen-password", "pw", "--nats-listen-token", "t"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			natsAddr := freePort(t)
			args := append([]string{"--data-dir", t.TempDir(), "--grpc-addr", "127.0.0.1:0", "--metrics-addr", "", "--http-addr", "", "--review=false", "--nats-listen", natsAddr}, tc.flags...)
			_, err := ParseConfig(args, func(string) string { return "" }, os.Stderr)
			if !errors.Is(err, node.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("parseConfig = %v, want an invalid configuration saying %q", err, tc.want)
			}
			if conn, err := net.DialTimeout("tcp", natsAddr, time.Second); err == nil {
				conn.Close()
				t.Fatalf("something listens on %s", natsAddr)
			}
		})
	}
}
