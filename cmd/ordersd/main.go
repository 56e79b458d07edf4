// Command ordersd serves orders.v1.OrderService over gRPC, keeping every
// order as events in the NATS JetStream stream ORDERS. With no flags it runs
// its own NATS server in process; --nats-url points it at an existing
// deployment instead. Every flag can also be set by an ORDERSD_ environment
// variable (--grpc-addr is ORDERSD_GRPC_ADDR); a flag on the command line wins.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/ordersd/ordersd/internal/auth"
	"github.com/ordersd/ordersd/internal/node"
)

// config is the node's configuration and the log settings, from flags and
// environment.
type config struct {
	node.Config
	logLevel  string
	logFormat string
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "version" {
		fmt.Println("ordersd", version())
		return
	}
	if len(os.Args) > 1 && os.Args[1] == migrateCommand {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := runMigrate(ctx, os.Args[2:], os.Getenv, os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	cfg, err := parseConfig(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ordersd:", err)
		os.Exit(2)
	}
	log, err := newLogger(cfg.logLevel, cfg.logFormat, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ordersd:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg.Version = version()
	if err := node.Run(ctx, cfg.Config, log); err != nil {
		log.Error("ordersd stopped", "err", err)
		os.Exit(1)
	}
}

// parseConfig reads flags from args, then fills every flag not given on the
// command line from its ORDERSD_ environment variable, and has the node
// validate the result (a wrong setting exits with status 2, as a wrong flag).
func parseConfig(args []string, getenv func(string) string, out io.Writer) (config, error) {
	var (
		c    config
		sync string
	)
	fs := flag.NewFlagSet("ordersd", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.GRPCAddr, "grpc-addr", "127.0.0.1:50051", "`address` the gRPC server listens on")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", "127.0.0.1:9464", "`address` of the HTTP endpoints /metrics (Prometheus), /livez and /readyz; empty: off")
	fs.StringVar(&c.DataDir, "data-dir", defaultDataDir(), "`directory` where the embedded NATS server keeps JetStream data (ignored with --nats-url)")
	fs.StringVar(&c.NATSURL, "nats-url", "", "comma-separated NATS server `urls` to use instead of the embedded server")
	fs.StringVar(&c.NATSAuth.User, "nats-user", "", "user name for --nats-url")
	fs.StringVar(&c.NATSAuth.Password, "nats-password", "", "password for --nats-url (prefer $ORDERSD_NATS_PASSWORD: flags show in process lists)")
	fs.StringVar(&c.NATSAuth.Token, "nats-token", "", "token for --nats-url (prefer $ORDERSD_NATS_TOKEN)")
	fs.StringVar(&c.NATSAuth.CredsFile, "nats-creds", "", "`file` with NATS user credentials (.creds) for --nats-url")
	fs.StringVar(&c.NATSAuth.NKeySeedFile, "nats-nkey", "", "`file` with an nkey seed for --nats-url")
	fs.StringVar(&c.NATSAuth.CAFile, "nats-ca", "", "`file` with CA certificates (PEM) to verify the NATS servers")
	fs.StringVar(&c.NATSAuth.CertFile, "nats-cert", "", "`file` with a client certificate (PEM) for NATS mutual TLS")
	fs.StringVar(&c.NATSAuth.KeyFile, "nats-key", "", "`file` with the key (PEM) of --nats-cert")
	fs.StringVar(&c.EmbeddedListen.Addr, "nats-listen", "", "`address` (host:port) where the embedded NATS server accepts NATS clients; closed when unset; needs --nats-listen-user and --nats-listen-password, or --nats-listen-token")
	fs.StringVar(&c.EmbeddedListen.User, "nats-listen-user", "", "the user allowed into the embedded NATS server")
	fs.StringVar(&c.EmbeddedListen.Password, "nats-listen-password", "", "that user's password (prefer $ORDERSD_NATS_LISTEN_PASSWORD)")
	fs.StringVar(&c.EmbeddedListen.Token, "nats-listen-token", "", "a token for the embedded NATS server, instead of a user (prefer $ORDERSD_NATS_LISTEN_TOKEN)")
	fs.StringVar(&c.ServerName, "server-name", defaultServerName(), "`name` of the embedded NATS server; unique in a cluster")
	fs.StringVar(&c.Cluster.Name, "cluster-name", "", "join the embedded NATS servers of several ordersd nodes into one JetStream cluster of this `name`")
	fs.StringVar(&c.Cluster.Listen, "cluster-listen", "", "`address` (host:port) where this node's embedded NATS server listens for its cluster peers")
	routes := fs.String("cluster-routes", "", "the peers' cluster `addresses`, comma-separated (host:port)")
	fs.StringVar(&sync, "sync-interval", "", "how often the embedded server fsyncs stored events to disk: a `duration`, or \"always\" (every event before it is acknowledged); nats-server's default (2m) when unset")
	fs.IntVar(&c.Replicas, "replicas", 1, "`copies` JetStream keeps of the stream ORDERS (3 on a three-node cluster)")
	fs.DurationVar(&c.DuplicateWindow, "duplicate-window", 10*time.Minute, "how long a create retried with only a request_id is recognised")
	fs.DurationVar(&c.OpTimeout, "nats-timeout", 5*time.Second, "longest wait for one JetStream operation before a call fails with UNAVAILABLE")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 15*time.Second, "how long shutdown waits for calls in flight before cutting them off")
	fs.DurationVar(&c.ShutdownDelay, "shutdown-delay", time.Second, "how long shutdown keeps serving after health turns NOT_SERVING, so load balancers and health-checking clients move away first; raise it to your balancer's health-check interval")
	fs.StringVar(&c.AckTokenKeyFile, "ack-token-key-file", "", "`file` holding the key (32 bytes or more) that signs ack tokens; every node of a deployment needs the same one (a random key when unset: tokens then work only on this process)")
	fs.StringVar(&c.TLS.CertFile, "tls-cert", "", "`file` with the gRPC server's certificate chain (PEM); plaintext when unset")
	fs.StringVar(&c.TLS.KeyFile, "tls-key", "", "`file` with the private key of --tls-cert (PEM)")
	fs.StringVar(&c.TLS.ClientCAFile, "tls-client-ca", "", "`file` with the CA certificates (PEM) that sign client certificates: turns on mutual TLS")
	c.Limits = node.DefaultLimits
	fs.IntVar(&c.Limits.MaxRecvMsgSize, "max-recv-msg-size", c.Limits.MaxRecvMsgSize, "largest request message, in `bytes`")
	maxStreams := fs.Uint("max-concurrent-streams", uint(c.Limits.MaxConcurrentStreams), "calls in progress at once on one client connection")
	fs.IntVar(&c.Limits.MaxWatchers, "max-watchers", c.Limits.MaxWatchers, "WatchOrders streams served at once by this node; more are refused with RESOURCE_EXHAUSTED")
	fs.IntVar(&c.Limits.MaxConsumers, "max-consumers", c.Limits.MaxConsumers, "ConsumeOrders streams served at once by this node; more are refused with RESOURCE_EXHAUSTED")
	fs.Float64Var(&c.Limits.RatePerSecond, "rate-limit", 0, "calls a second allowed to each caller (identity, or IP address without authentication); over it: RESOURCE_EXHAUSTED; 0: no limit")
	fs.IntVar(&c.Limits.RateBurst, "rate-burst", 100, "calls a caller may make at once above --rate-limit")
	fs.StringVar(&c.Auth.TokensFile, "auth-tokens-file", "", "`file` (JSON) listing static bearer tokens, their identities and permissions; turns authentication on")
	fs.StringVar(&c.Auth.JWTHMACKeyFile, "auth-jwt-hmac-key-file", "", "`file` with the shared key of HS256/384/512 JWTs; turns authentication on")
	fs.StringVar(&c.Auth.JWTPublicKeyFile, "auth-jwt-public-key-file", "", "`file` with the PEM public key (RSA, ECDSA, Ed25519) that verifies JWTs; turns authentication on")
	fs.StringVar(&c.Auth.JWKSFile, "auth-jwks-file", "", "`file` with a JSON Web Key Set that verifies JWTs (by kid); turns authentication on")
	fs.StringVar(&c.Auth.Issuer, "auth-jwt-issuer", "", "required iss of JWTs, when set")
	fs.StringVar(&c.Auth.Audience, "auth-jwt-audience", "", "required aud of JWTs, when set")
	public := fs.String("auth-public-services", strings.Join(auth.DefaultPublicServices, ","), "gRPC services callable without a token (comma-separated; empty: none)")
	fs.BoolVar(&c.Review, "review", true, "run the built-in order-review worker")
	fs.Int64Var(&c.ReviewLimit, "review-limit-minor", 100_000, "the review approves orders whose total_minor is at most this, and rejects the rest")
	fs.IntVar(&c.ReviewConcurrency, "review-concurrency", node.DefaultReviewConcurrency, "reviews the order-review worker keeps in flight at once")
	fs.StringVar(&c.logLevel, "log-level", "info", "log `level`: debug, info, warn or error")
	fs.StringVar(&c.logFormat, "log-format", "text", "log `format`: text or json")
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: ordersd [flags]\n       ordersd migrate [flags]\n       ordersd version\n\nFlags (each also read from the environment variable shown):\n")
		fs.VisitAll(func(f *flag.Flag) {
			name, usage := flag.UnquoteUsage(f)
			fmt.Fprintf(out, "  --%s %s\n    \t%s (default %q, $%s)\n", f.Name, name, usage, f.DefValue, envName(f.Name))
		})
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if v := getenv(envName(f.Name)); v != "" && !given[f.Name] && envErr == nil {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = fmt.Errorf("$%s: %w", envName(f.Name), err)
			}
		}
	})
	if envErr != nil {
		return c, envErr
	}
	c.Limits.MaxConcurrentStreams = uint32(min(*maxStreams, 1<<31))
	for _, r := range strings.Split(*routes, ",") {
		if r = strings.TrimSpace(r); r != "" {
			c.Cluster.Routes = append(c.Cluster.Routes, r)
		}
	}
	switch {
	case sync == "always":
		c.SyncAlways = true
	case sync != "":
		d, err := time.ParseDuration(sync)
		if err != nil || d <= 0 {
			return c, fmt.Errorf("--sync-interval must be a positive duration or \"always\", got %q", sync)
		}
		c.SyncInterval = d
	}
	c.PublicServices = nil
	for _, svc := range strings.Split(*public, ",") {
		if svc = strings.TrimSpace(svc); svc != "" {
			c.PublicServices = append(c.PublicServices, svc)
		}
	}
	// The node owns its settings and says which are wrong; main only maps
	// flags and environment onto them.
	return c, c.Validate()
}

// defaultServerName names the embedded NATS server after the host, so
// that nodes of a cluster on different machines differ without a flag.
func defaultServerName() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		return "ordersd"
	}
	return "ordersd-" + host
}

// envName is the environment variable of a flag: grpc-addr → ORDERSD_GRPC_ADDR.
func envName(flagName string) string {
	return "ORDERSD_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// defaultDataDir follows the XDG base directory convention:
// $XDG_DATA_HOME/ordersd, else ~/.local/share/ordersd.
func defaultDataDir() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "ordersd")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "share", "ordersd")
	}
	return "ordersd-data"
}

func newLogger(level, format string, w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format must be text or json, got %q", format)
}

// version is the module version the binary was built from ("(devel)" for
// a build from a checkout), with the VCS revision when known.
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := info.Main.Version
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" {
			v += " " + s.Value
		}
	}
	return v + " " + info.GoVersion
}
