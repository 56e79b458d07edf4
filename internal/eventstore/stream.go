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

func (o StreamOptions) withDefaults() StreamOptions {
	if o.Replicas == 0 {
		o.Replicas = DefaultStreamOptions.Replicas
	}
	if o.DuplicateWindow == 0 {
		o.DuplicateWindow = DefaultStreamOptions.DuplicateWindow
	}
	return o
}

// streamConfig is the stream ORDERS as ordersd needs it.
func (o StreamOptions) streamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        StreamName,
		Description: "ordersd order events: ORDERS.<event>.<order_id>, payload orders.v1.Order",
		Subjects:    []string{StreamSubjects},
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

// provisionStream creates the stream ORDERS, or updates it to the wanted
// settings when it exists.
func provisionStream(ctx context.Context, js jetstream.JetStream, opts StreamOptions) (jetstream.Stream, error) {
	cfg := opts.streamConfig()
	stream, err := js.CreateOrUpdateStream(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("provision stream %s: %w", StreamName, err)
	}
	return stream, nil
}

// isStreamMissing reports whether err says the stream does not exist.
func isStreamMissing(err error) bool {
	return errors.Is(err, jetstream.ErrStreamNotFound)
}
