package eventstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StreamOptions are the settings of the stream ORDERS that ordersd provisions.
type StreamOptions struct {
	// Replicas is the number of copies JetStream keeps (1 embedded, 3 on a
	// three-node cluster).
	Replicas int
	// DuplicateWindow is how long JetStream remembers Nats-Msg-Ids. A create
	// retried with only a request id is recognised within it; creates with an
	// order id and all transitions are recognised for the order's lifetime.
	DuplicateWindow time.Duration
}

// DefaultStreamOptions are used for zero fields of StreamOptions.
var DefaultStreamOptions = StreamOptions{Replicas: 1, DuplicateWindow: 10 * time.Minute}

// WithDefaults fills the zero fields of o from DefaultStreamOptions.
func (o StreamOptions) WithDefaults() StreamOptions {
	if o.Replicas == 0 {
		o.Replicas = DefaultStreamOptions.Replicas
	}
	if o.DuplicateWindow == 0 {
		o.DuplicateWindow = DefaultStreamOptions.DuplicateWindow
	}
	return o
}

// StreamConfig is the stream ORDERS as ordersd needs it (a migration
// creates it with these settings too).
func (o StreamOptions) StreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        StreamName,
		Description: "ordersd order events: ORDERS.<event>.<customer_id>.<order_id>, payload orders.v1.Order",
		Metadata:    map[string]string{MetadataLayout: Layout},
		Subjects:    CapturedSubjects(),
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Replicas:    o.Replicas,
		Duplicates:  o.DuplicateWindow,
		// Events are the orders' only record: no one deletes single events.
		DenyDelete: true,
		// Nor purges them: ordersd never needs to, and a purge would erase orders.
		DenyPurge: true,
		// Reads of an order's state go to the stream leader (no direct get),
		// so a read after a write always sees it, even on a replicated stream.
		AllowDirect: false,
	}
}

// streams are the handles of the two streams a store uses.
type streams struct {
	orders jetstream.Stream // ORDERS: the events
	index  jetstream.Stream // ORDER_IDS: the order-id index
}

// provisionStreams creates the streams ORDERS and ORDER_IDS, or updates
// them to the wanted settings when they exist (a stream made by an older
// ordersd, which captured all of ORDERS.>, is narrowed in place to
// CapturedSubjects: what it stored stays), and then those of the
// companions. A stream ORDERS that holds events in an older subject layout
// is left untouched: ErrLayoutOutdated.
func provisionStreams(ctx context.Context, js jetstream.JetStream, opts StreamOptions, companions []Companion) (streams, error) {
	if err := checkLayout(ctx, js); err != nil {
		return streams{}, err
	}
	orders, err := js.CreateOrUpdateStream(ctx, opts.StreamConfig())
	if err != nil {
		return streams{}, fmt.Errorf("provision stream %s: %w", StreamName, err)
	}
	index, err := js.CreateOrUpdateStream(ctx, opts.IndexStreamConfig())
	if err != nil {
		return streams{}, fmt.Errorf("provision stream %s: %w", IndexStreamName, err)
	}
	for _, c := range companions {
		if err := c.Provision(ctx); err != nil {
			return streams{}, err
		}
	}
	return streams{orders: orders, index: index}, nil
}

// checkLayout fails with ErrLayoutOutdated when the stream ORDERS exists,
// holds events and does not say it is in this build's Layout, or when a
// migration is filling it (MetadataMigration), even while it is empty.
// Any other empty stream is adopted as it is.
func checkLayout(ctx context.Context, js jetstream.JetStream) error {
	stream, err := js.Stream(ctx, StreamName)
	if isStreamMissing(err) {
		return nil
	}
	if err != nil {
		return err
	}
	info := stream.CachedInfo()
	if marker := info.Config.Metadata[MetadataMigration]; marker != "" {
		return fmt.Errorf("%w: stream %s is being migrated to layout %s (%s); see docs/subject-layout.md, \"Upgrading the stream layout\"",
			ErrLayoutOutdated, StreamName, Layout, marker)
	}
	if have := info.Config.Metadata[MetadataLayout]; have != Layout && info.State.Msgs > 0 {
		return layoutError(have, info.State.Msgs)
	}
	return nil
}

// layoutError explains an outdated stream and names the command that
// rewrites it.
func layoutError(have string, msgs uint64) error {
	if have == "" {
		have = "1"
	}
	return fmt.Errorf("%w: stream %s holds %d events in subject layout %s, this ordersd reads layout %s "+
		"(ORDERS.<event>.<customer_id>.<order_id>); stop every ordersd node and run `ordersd migrate` "+
		"with the same NATS settings to rewrite it (see docs/subject-layout.md, \"Upgrading the stream layout\")",
		ErrLayoutOutdated, StreamName, msgs, have, Layout)
}

// isStreamMissing reports whether err says the stream does not exist.
func isStreamMissing(err error) bool {
	return errors.Is(err, jetstream.ErrStreamNotFound)
}
