// Package cli is the ordersd command: its flags and environment variables,
// its subcommands (migrate, rebalance, version) and the run of a node from them.
// cmd/ordersd calls Main; the system tests (internal/systemtest) call it
// too, to run as ordersd in a child process.
//
// With no flags ordersd runs its own NATS server in process; --nats-url
// points it at an existing deployment instead. Every flag can also be set
// by an ORDERSD_ environment variable (--grpc-addr is ORDERSD_GRPC_ADDR);
// a flag on the command line wins.
package cli

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
	"github.com/ordersd/ordersd/internal/eventstore"
	"github.com/ordersd/ordersd/internal/leaders"
	"github.com/ordersd/ordersd/internal/node"
)

// Config is the node's configuration and the log settings, from flags and
// environment.
type Config struct {
	node.Config
	logLevel  string
	logFormat string
}

// Main runs the ordersd command line args (without the program name) until
// ctx is done, and returns the process's exit status: 0 stopped cleanly, 1
// the node failed, 2 bad flags or settings.
func Main(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "version" {
		fmt.Fprintln(stdout, "ordersd", version())
		return 0
	}
	if len(args) > 0 && args[0] == migrateCommand {
		return runMigrate(ctx, args[1:], getenv, stdout, stderr)
	}
	if len(args) > 0 && args[0] == rebalanceCommand {
		return runRebalance(ctx, args[1:], getenv, stdout, stderr)
	}
	cfg, err := ParseConfig(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "ordersd:", err)
		return 2
	}
	log, err := newLogger(cfg.logLevel, cfg.logFormat, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "ordersd:", err)
		return 2
	}
	cfg.Version = version()
	reloading, stopReloading := context.WithCancel(ctx)
	defer stopReloading()
	cfg.ReloadRequests = reloadOnSIGHUP(reloading)
	if err := node.Run(ctx, cfg.Config, log); err != nil {
		log.Error("ordersd stopped", "err", err)
		return 1
	}
	return 0
}

// ParseConfig reads flags from args, then fills every flag not given on the
// command line from its ORDERSD_ environment variable, and has the node
// validate the result (a wrong setting exits with status 2, as a wrong flag).
func ParseConfig(args []string, getenv func(string) string, out io.Writer) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("ordersd", flag.ContinueOnError)
	fs.SetOutput(out)
	text := defineFlags(fs, &c)
	fs.Usage = func() { usage(fs, out) }
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if err := setFromEnvironment(fs, given, getenv); err != nil {
		return c, err
	}
	if err := text.apply(&c); err != nil {
		return c, err
	}
	if c.XDS && !given["http-addr"] && getenv(envName("http-addr")) == "" {
		// The HTTP port would bypass the mesh's listener policy: off
		// unless asked for, which Validate then refuses with a reason.
		c.HTTPAddr = ""
	}
	// The node owns its settings and says which are wrong; the command
	// only maps flags and environment onto them.
	return c, c.Validate()
}

// flagText holds the flags that become settings only once parsed: lists,
// and values of a syntax of their own.
type flagText struct {
	corsOrigins, routes, public, sync *string
	maxStreams                        *uint
}

// defineFlags defines every flag of ordersd on fs, each setting a field
// of c or, for those that need parsing, of the returned flagText.
func defineFlags(fs *flag.FlagSet, c *Config) flagText {
	var sync string
	fs.StringVar(&c.GRPCAddr, "grpc-addr", "127.0.0.1:50051", "`address` the gRPC server listens on")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", "127.0.0.1:9464", "`address` of the HTTP endpoints /metrics (Prometheus), /livez and /readyz; empty: off")
	fs.StringVar(&c.HTTPAddr, "http-addr", "127.0.0.1:8080", "`address` where the API is served over HTTP: Connect (JSON or protobuf), gRPC-Web and gRPC, with the gRPC port's TLS, authentication and limits; empty: off")
	fs.BoolVar(&c.Console, "console", true, "serve the operator console, a page for browsers (board, orders, queues, dead letters, health), at / on --http-addr; it calls the API with the token it is given, so it can do no more than that token")
	corsOrigins := fs.String("http-cors-origins", "", "browser `origins` allowed to call --http-addr, comma-separated (https://app.example.com); * allows any; empty: none")
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
	fs.StringVar(&c.EmbeddedListen.Access, "nats-listen-access", node.ListenRead, "what the user of --nats-listen may do: \"read\" (read and consume the streams; no publish on ORDERS.>, no purge or delete) or \"full\" (everything, as ordersd itself: for other ordersd nodes with --nats-url, or writers of ORDERS.>)")
	fs.StringVar(&c.ServerName, "server-name", defaultServerName(), "`name` of the embedded NATS server; unique in a cluster")
	fs.StringVar(&c.Cluster.Name, "cluster-name", "", "join the embedded NATS servers of several ordersd nodes into one JetStream cluster of this `name`")
	fs.StringVar(&c.Cluster.Listen, "cluster-listen", "", "`address` (host:port) where this node's embedded NATS server listens for its cluster peers")
	routes := fs.String("cluster-routes", "", "the peers' cluster `addresses`, comma-separated (host:port)")
	fs.StringVar(&sync, "sync-interval", "", "how often the embedded server fsyncs stored events to disk: a `duration`, or \"always\" (every event before it is acknowledged); nats-server's default (2m) when unset")
	fs.IntVar(&c.Partitions, "partitions", 0, fmt.Sprintf("`streams` the orders are partitioned over, 1 to %d (ORDERS_0 …, each with a leader of its own), fixed when the streams are first made; 0: the one stream ORDERS (layout 2)", eventstore.MaxPartitions))
	fs.IntVar(&c.Replicas, "replicas", 1, "`copies` JetStream keeps of the stream ORDERS (3 on a three-node cluster)")
	fs.DurationVar(&c.DuplicateWindow, "duplicate-window", 10*time.Minute, "how long a create retried with only a request_id is recognised")
	fs.DurationVar(&c.OpTimeout, "nats-timeout", 5*time.Second, "longest wait for one JetStream operation before a call fails with UNAVAILABLE")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 15*time.Second, "how long shutdown waits for calls in flight before cutting them off")
	fs.DurationVar(&c.ShutdownDelay, "shutdown-delay", time.Second, "how long shutdown keeps serving after health turns NOT_SERVING, so load balancers and health-checking clients move away first; raise it to your balancer's health-check interval")
	fs.StringVar(&c.AckTokenKeyFile, "ack-token-key-file", "", "`file` holding the key that signs ack tokens, as hex or base64 text of 32 random bytes or more ("+node.AckTokenKeyRecipe+"); every node of a deployment needs the same one, and it is required with --cluster-name or --nats-url (when unset, a single embedded node keeps a key of its own in its data directory, ack-token.key, made on first start)")
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
	fs.StringVar(&c.Auth.Issuer, "auth-jwt-issuer", "", "the iss every JWT must carry; required with a JWT key source unless --auth-jwt-any-issuer")
	fs.StringVar(&c.Auth.Audience, "auth-jwt-audience", "", "the aud every JWT must carry; required with a JWT key source unless --auth-jwt-any-audience")
	// Security of a mesh: route mTLS, TLS of the NATS listener, JWT key
	// sets by URL and checks waived only on purpose, failed-auth throttling.
	fs.StringVar(&c.ClusterTLS.CertFile, "cluster-cert", "", "`file` with this node's route certificate (PEM), shown to its cluster peers and used to open routes to them; with --cluster-key and --cluster-ca")
	fs.StringVar(&c.ClusterTLS.KeyFile, "cluster-key", "", "`file` with the private key of --cluster-cert (PEM)")
	fs.StringVar(&c.ClusterTLS.CAFile, "cluster-ca", "", "`file` with the CA certificates (PEM) that sign the cluster peers' route certificates: only peers with one may join")
	fs.BoolVar(&c.ClusterTLS.Insecure, "cluster-insecure", false, "allow plaintext, unauthenticated cluster routes beyond loopback (a lab only: anyone who reaches --cluster-listen can join and delete the stream)")
	fs.StringVar(&c.EmbeddedListen.CertFile, "nats-listen-cert", "", "`file` with the certificate (PEM) of --nats-listen: NATS clients must then use TLS")
	fs.StringVar(&c.EmbeddedListen.KeyFile, "nats-listen-key", "", "`file` with the private key of --nats-listen-cert (PEM)")
	fs.StringVar(&c.EmbeddedListen.ClientCAFile, "nats-listen-client-ca", "", "`file` with the CA certificates (PEM) that sign NATS client certificates: clients of --nats-listen must show one")
	fs.StringVar(&c.Auth.JWKSURL, "auth-jwks-url", "", "https `url` of a JSON Web Key Set that verifies JWTs (by kid), cached and refreshed hourly and on an unknown kid; turns authentication on")
	fs.BoolVar(&c.Auth.AnyIssuer, "auth-jwt-any-issuer", false, "accept JWTs of any iss (waives --auth-jwt-issuer)")
	fs.BoolVar(&c.Auth.AnyAudience, "auth-jwt-any-audience", false, "accept JWTs of any aud (waives --auth-jwt-audience): tokens minted for other services are then accepted")
	fs.IntVar(&c.Auth.FailureBurst, "auth-failure-burst", auth.DefaultFailureBurst, "failed authentications an IP address may make at once (then one a second) before its calls are refused with RESOURCE_EXHAUSTED without checking their credentials")
	public := fs.String("auth-public-services", strings.Join(auth.DefaultPublicServices, ","), "gRPC services callable without a token (comma-separated; empty: none)")
	fs.BoolVar(&c.Review, "review", true, "run the built-in order-review worker")
	fs.Int64Var(&c.ReviewLimit, "review-limit-minor", 100_000, "the review approves orders whose total_minor is at most this, and rejects the rest")
	fs.IntVar(&c.ReviewConcurrency, "review-concurrency", node.DefaultReviewConcurrency, "reviews the order-review worker keeps in flight at once")
	fs.DurationVar(&c.ConsumerInactiveThreshold, "consumer-inactive-threshold", node.DefaultConsumerInactiveThreshold, "how long a durable consumer made by ConsumeOrders may go without a client before JetStream deletes it (QueueService.UpdateConsumer changes it per consumer); 0: never")
	fs.IntVar(&c.MaxDurableConsumers, "max-consumers-durable", node.DefaultMaxDurableConsumers, "durable consumers that may exist on the stream ORDERS, order-review included; ConsumeOrders creates no more (RESOURCE_EXHAUSTED); 0: no cap")
	// Stream leaders: where they are (ordersd_stream_leader), spread over an embedded cluster.
	fs.DurationVar(&c.RebalanceInterval, "rebalance-interval", leaders.DefaultInterval, "how often each node reads where the leaders of ordersd's streams are (the metric ordersd_stream_leader) and, on the node whose embedded NATS server is the JetStream meta leader, spreads them over the cluster's servers; sooner while streams are being provisioned or elect leaders")
	fs.BoolVar(&c.Rebalance, "rebalance", true, "spread the leaders of ordersd's streams over the servers of an embedded cluster, at provisioning and when a node returns; with --nats-url no node does: run ordersd rebalance")
	// Service mesh: xDS server mode and ORCA load reports.
	fs.BoolVar(&c.XDS, "xds", false, "serve through gRPC's xDS server: an xDS control plane, named by the bootstrap in $GRPC_XDS_BOOTSTRAP (a file) or $GRPC_XDS_BOOTSTRAP_CONFIG (its JSON), configures the listener (mTLS, RBAC); NOT_SERVING until it has")
	c.LoadReport = node.DefaultLoadReportOptions
	fs.DurationVar(&c.LoadReport.MinInterval, "orca-min-interval", c.LoadReport.MinInterval, "shortest interval between two ORCA load reports to a client (weighted_round_robin's oobReportingPeriod); a client asking for less gets this")
	fs.IntVar(&c.LoadReport.CallsCapacity, "orca-calls-capacity", c.LoadReport.CallsCapacity, "unary calls in flight, on average, at which the load reports count the node as fully used")
	fs.StringVar(&c.logLevel, "log-level", "info", "log `level`: debug, info, warn or error")
	fs.StringVar(&c.logFormat, "log-format", "text", "log `format`: text or json")
	return flagText{corsOrigins: corsOrigins, routes: routes, public: public, sync: &sync, maxStreams: maxStreams}
}

// usage prints --help: the commands, then each flag with its default and
// its environment variable.
func usage(fs *flag.FlagSet, out io.Writer) {
	fmt.Fprintf(out, "Usage: ordersd [flags]\n       ordersd migrate [flags]\n       ordersd rebalance [flags]\n       ordersd version\n\nFlags (each also read from the environment variable shown):\n")
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		fmt.Fprintf(out, "  --%s %s\n    \t%s (default %q, $%s)\n", f.Name, name, usage, f.DefValue, envName(f.Name))
	})
}

// setFromEnvironment sets every flag not given on the command line from
// its ORDERSD_ environment variable, when that is set.
func setFromEnvironment(fs *flag.FlagSet, given map[string]bool, getenv func(string) string) error {
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if v := getenv(envName(f.Name)); v != "" && !given[f.Name] && envErr == nil {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = fmt.Errorf("$%s: %w", envName(f.Name), err)
			}
		}
	})
	return envErr
}

// apply parses the flags of t into c.
func (t flagText) apply(c *Config) error {
	c.Limits.MaxConcurrentStreams = uint32(min(*t.maxStreams, 1<<31))
	c.Cluster.Routes = splitList(*t.routes)
	switch sync := *t.sync; {
	case sync == "always":
		c.SyncAlways = true
	case sync != "":
		d, err := time.ParseDuration(sync)
		if err != nil || d <= 0 {
			return fmt.Errorf("--sync-interval must be a positive duration or \"always\", got %q", sync)
		}
		c.SyncInterval = d
	}
	c.HTTPCORSOrigins = splitList(*t.corsOrigins)
	c.PublicServices = splitList(*t.public)
	return nil
}

// splitList splits a comma-separated flag value, dropping blanks.
func splitList(v string) []string {
	var items []string
	for _, item := range strings.Split(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			items = append(items, item)
		}
	}
	return items
}

// reloadOnSIGHUP turns SIGHUP into requests to read certificates, tokens
// and keys again (instead of ending the process, SIGHUP's default), until
// ctx is done.
func reloadOnSIGHUP(ctx context.Context) <-chan struct{} {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	requests := make(chan struct{}, 1)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				select {
				case requests <- struct{}{}:
				default: // one is pending already
				}
			}
		}
	}()
	return requests
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
