package node

import (
	"errors"
	"fmt"
	"time"

	"github.com/ordersd/ordersd/consumers"
	"github.com/ordersd/ordersd/internal/auth"
	"github.com/ordersd/ordersd/internal/eventstore"
	"github.com/ordersd/ordersd/internal/natsconn"
)

// ErrInvalidConfig is wrapped by the error of Config.Validate (and so of
// Run) when a setting is missing or out of range.
var ErrInvalidConfig = errors.New("invalid configuration")

// DefaultReviewConcurrency is the default of Config.ReviewConcurrency
// (--review-concurrency).
const DefaultReviewConcurrency = consumers.DefaultReviewConcurrency

// Defaults of the durable consumers ConsumeOrders makes
// (--consumer-inactive-threshold, --max-consumers-durable).
const (
	DefaultConsumerInactiveThreshold = consumers.DefaultInactiveThreshold
	DefaultMaxDurableConsumers       = 1000
)

// maxReplicas is the most copies JetStream keeps of a stream.
const maxReplicas = 5

// Config is everything a node needs; the ordersd command (internal/cli)
// fills it from flags (named in brackets, and in the errors of Validate)
// and the environment.
type Config struct {
	GRPCAddr          string                   // where the gRPC server listens (--grpc-addr)
	MetricsAddr       string                   // where /metrics, /livez and /readyz are served; off when empty (--metrics-addr)
	HTTPAddr          string                   // where Connect, gRPC-Web and gRPC over HTTP are served; off when empty (--http-addr)
	HTTPCORSOrigins   []string                 // browser origins allowed to call HTTPAddr; "*" for any (--http-cors-origins)
	Console           bool                     // serve the operator console at / on HTTPAddr (--console)
	DataDir           string                   // JetStream data of the embedded server; required without NATSURL (--data-dir)
	NATSURL           string                   // an existing deployment; the embedded server when empty (--nats-url)
	NATSAuth          NATSAuth                 // credentials and TLS for NATSURL
	EmbeddedListen    EmbeddedListen           // opens the embedded server to NATS clients
	ServerName        string                   // the embedded server's name; unique in a cluster (--server-name)
	Cluster           natsconn.EmbeddedCluster // joins embedded servers into one JetStream cluster
	ClusterTLS        ClusterTLS               // mutual TLS of the cluster's routes; required beyond loopback
	SyncInterval      time.Duration            // how often the embedded server fsyncs (0: nats-server's default)
	SyncAlways        bool                     // fsync every message before acknowledging it
	Partitions        int                      // streams the orders are partitioned over, 1 to eventstore.MaxPartitions; 0: layout 2's one stream ORDERS
	Replicas          int                      // copies of the stream ORDERS, 1 to 5 (--replicas)
	DuplicateWindow   time.Duration            // how long JetStream remembers Nats-Msg-Ids; positive (--duplicate-window)
	OpTimeout         time.Duration            // longest wait for one JetStream operation; positive (--nats-timeout)
	ShutdownTimeout   time.Duration            // how long shutdown waits for calls in flight; positive (--shutdown-timeout)
	ShutdownDelay     time.Duration            // how long shutdown serves on after health turns NOT_SERVING; 0 or more (--shutdown-delay)
	AckTokenKeyFile   string                   // the key signing ack tokens (text, see readAckTokenKey); random when empty, for a lone embedded node only
	TLS               TLSConfig                // the gRPC server's TLS; plaintext when empty
	Limits            Limits                   // bounds on what clients can make the node hold; see Validate
	Auth              auth.Config              // who may call what; off when empty
	PublicServices    []string                 // gRPC services open without a token
	Review            bool                     // run the order-review worker
	ReviewLimit       int64                    // largest total_minor the review approves
	ReviewConcurrency int                      // reviews in flight at once, 1 to consumers.MaxReviewConcurrency (--review-concurrency)
	XDS               bool                     // serve through grpc-go's xDS server, configured by the bootstrap's control plane (--xds)
	LoadReport        LoadReportOptions        // the ORCA load reports for weighted balancing (--orca-*)
	RebalanceInterval time.Duration            // how often the placement of the streams' leaders is checked; leaders.DefaultInterval when zero (--rebalance-interval)
	Rebalance         bool                     // spread the streams' leaders over an embedded cluster (--rebalance)

	// Durable consumers made by ConsumeOrders: how long one may go without
	// a client before JetStream deletes it, 0 for never
	// (--consumer-inactive-threshold), and how many may exist on ORDERS,
	// order-review included, 0 for no cap (--max-consumers-durable).
	ConsumerInactiveThreshold time.Duration
	MaxDurableConsumers       int

	// ReloadRequests, when set, makes the node read its certificates, CA
	// bundles, tokens file and JWT keys again on each value (the ordersd
	// command sends one on SIGHUP); it also reads them when their files
	// change.
	ReloadRequests <-chan struct{}

	// OnReady, when set, is called once the node serves gRPC.
	OnReady func(Ready)
	// Version names the build in traces.
	Version string
}

// Layout is how the node lays the orders out over streams (--partitions).
func (c Config) Layout() eventstore.Layout { return eventstore.Layout{Partitions: c.Partitions} }

// Validate reports the first setting of c that is missing, out of range or
// at odds with another, as an error that wraps ErrInvalidConfig and names
// the ordersd flag that sets it. Run calls it before it opens anything. It
// reads no file: files named by c are read, and their errors reported, by
// Run.
func (c Config) Validate() error {
	if err := c.validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

func (c Config) validate() error {
	switch {
	case c.Replicas < 1 || c.Replicas > maxReplicas:
		return fmt.Errorf("--replicas must be 1 to %d, got %d", maxReplicas, c.Replicas)
	case eventstore.Layout{Partitions: c.Partitions}.Check() != nil:
		return fmt.Errorf("--partitions must be 0 (the one stream ORDERS) or 1 to %d, got %d", eventstore.MaxPartitions, c.Partitions)
	case c.DuplicateWindow <= 0:
		return fmt.Errorf("--duplicate-window must be positive, got %s", c.DuplicateWindow)
	case c.OpTimeout <= 0:
		return fmt.Errorf("--nats-timeout must be positive, got %s", c.OpTimeout)
	case c.ShutdownTimeout <= 0:
		return fmt.Errorf("--shutdown-timeout must be positive, got %s", c.ShutdownTimeout)
	case c.ReviewLimit < 0:
		return fmt.Errorf("--review-limit-minor must not be negative, got %d", c.ReviewLimit)
	case c.ReviewConcurrency < 1 || c.ReviewConcurrency > consumers.MaxReviewConcurrency:
		return fmt.Errorf("--review-concurrency must be 1 to %d, got %d", consumers.MaxReviewConcurrency, c.ReviewConcurrency)
	case c.XDS && c.HTTPAddr != "":
		return errors.New("--http-addr cannot be used with --xds: calls on the HTTP port would bypass the listener policy (mTLS, RBAC) that the control plane gives the xDS server; set --http-addr \"\"")
	case c.ShutdownDelay < 0:
		return fmt.Errorf("--shutdown-delay must not be negative, got %s", c.ShutdownDelay)
	case c.SyncInterval < 0:
		return fmt.Errorf("--sync-interval must be positive, got %s", c.SyncInterval)
	case c.ConsumerInactiveThreshold < 0:
		return fmt.Errorf("--consumer-inactive-threshold must not be negative, got %s", c.ConsumerInactiveThreshold)
	case c.RebalanceInterval < 0:
		return fmt.Errorf("--rebalance-interval must be positive, got %s", c.RebalanceInterval)
	case c.MaxDurableConsumers < 0:
		return fmt.Errorf("--max-consumers-durable must not be negative, got %d", c.MaxDurableConsumers)
	}
	if err := c.LoadReport.validate(); err != nil {
		return err
	}
	if err := c.Limits.validate(); err != nil {
		return err
	}
	if err := c.TLS.validate(); err != nil {
		return err
	}
	if err := validateCORSOrigins(c.HTTPCORSOrigins); err != nil {
		return err
	}
	if err := c.Auth.Validate(); err != nil {
		return err
	}
	if (c.NATSURL != "" || c.Cluster.Name != "") && c.AckTokenKeyFile == "" {
		return fmt.Errorf("--ack-token-key-file is required with --cluster-name or --nats-url: every node must sign ack tokens with the same key, or a token acked on another node is refused; make one with `%s` and give it to every node", AckTokenKeyRecipe)
	}
	if c.NATSURL != "" {
		return c.NATSAuth.validate()
	}
	if c.DataDir == "" {
		return errors.New("--data-dir is required for the embedded NATS server")
	}
	if (c.Cluster.Name != "") != (c.Cluster.Listen != "") {
		return errors.New("--cluster-name and --cluster-listen go together")
	}
	if c.Cluster.Name != "" {
		if err := c.ClusterTLS.validate(c.Cluster.Listen); err != nil {
			return err
		}
	}
	return c.EmbeddedListen.validate()
}
