package eventstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
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

// StreamConfig is the stream ORDERS of layout 2 as ordersd needs it (a
// migration creates it with these settings too).
func (o StreamOptions) StreamConfig() jetstream.StreamConfig {
	return o.PartitionConfig(Partition{})
}

// PartitionConfig is the stream of partition p as ordersd needs it.
func (o StreamOptions) PartitionConfig(p Partition) jetstream.StreamConfig {
	cfg := jetstream.StreamConfig{
		Name:        p.Stream(),
		Description: "ordersd order events: " + p.subjectForm() + ", payload orders.v1.Order",
		Metadata:    map[string]string{MetadataLayout: UnpartitionedLayout},
		Subjects:    p.CapturedSubjects(),
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Replicas:    o.Replicas,
		Duplicates:  o.DuplicateWindow,
		// Layout 2's events are the orders' only record: no one deletes
		// single events, nor purges them. JetStream never clears these
		// two on an existing stream, which is why layout 3 leaves them off:
		// its streams can be trimmed once orders are archived, and the
		// account's permissions decide who may (docs/subject-layout.md).
		DenyDelete: true,
		DenyPurge:  true,
		// Reads of an order's state go to the stream leader (no direct get),
		// so a read after a write always sees it, even on a replicated stream.
		AllowDirect: false,
	}
	if p.Of > 0 {
		cfg.Description = fmt.Sprintf("ordersd orders, partition %d of %d: events on %s, order-id claims on %s, payload orders.v1.Order",
			p.Number, p.Of, p.subjectForm(), p.ClaimSubject("<order_id>"))
		cfg.Metadata = map[string]string{
			MetadataLayout:     PartitionedLayout,
			MetadataPartitions: strconv.Itoa(p.Of),
			MetadataPartition:  strconv.Itoa(p.Number),
		}
		cfg.DenyDelete, cfg.DenyPurge = false, false
	}
	return cfg
}

// streams are the handles of the streams a store uses, by partition
// number (one in layout 2).
type streams struct {
	parts []partitionStreams
}

// partitionStreams are the handles of one partition's streams: its events
// and its order-id claims (the same stream in layout 3).
type partitionStreams struct {
	Partition
	events jetstream.Stream
	claims jetstream.Stream
}

// of is the handles of partition p.
func (st streams) of(p Partition) partitionStreams { return st.parts[p.Number] }

// provisionStreams creates the streams of layout l, or updates them to
// the wanted settings when they exist (a stream ORDERS made by an older
// ordersd, which captured all of ORDERS.>, is narrowed in place to
// CapturedSubjects: what it stored stays), and then those of the
// companions. Streams that hold events in another layout, or another
// number of partitions, are left untouched: ErrLayoutOutdated.
func provisionStreams(ctx context.Context, js jetstream.JetStream, l Layout, opts StreamOptions, companions []Companion) (streams, error) {
	if err := checkLayout(ctx, js, l); err != nil {
		return streams{}, err
	}
	var st streams
	if !l.Partitioned() {
		orders, err := js.CreateOrUpdateStream(ctx, opts.StreamConfig())
		if err != nil {
			return streams{}, fmt.Errorf("provision stream %s: %w", StreamName, err)
		}
		index, err := js.CreateOrUpdateStream(ctx, opts.IndexStreamConfig())
		if err != nil {
			return streams{}, fmt.Errorf("provision stream %s: %w", IndexStreamName, err)
		}
		st.parts = []partitionStreams{{events: orders, claims: index}}
	}
	for _, p := range l.All() {
		if !l.Partitioned() {
			break
		}
		stream, err := js.CreateOrUpdateStream(ctx, opts.PartitionConfig(p))
		if err != nil {
			return streams{}, fmt.Errorf("provision stream %s: %w", p.Stream(), err)
		}
		st.parts = append(st.parts, partitionStreams{Partition: p, events: stream, claims: stream})
	}
	for _, c := range companions {
		if err := c.Provision(ctx); err != nil {
			return streams{}, err
		}
	}
	return st, nil
}

// lookUpStreams finds the streams of layout l.
func lookUpStreams(ctx context.Context, js jetstream.JetStream, l Layout) (streams, error) {
	var st streams
	for _, p := range l.All() {
		events, err := js.Stream(ctx, p.Stream())
		if err != nil {
			return streams{}, err
		}
		claims := events
		if !l.Partitioned() {
			if claims, err = js.Stream(ctx, IndexStreamName); err != nil {
				return streams{}, err
			}
		}
		st.parts = append(st.parts, partitionStreams{Partition: p, events: events, claims: claims})
	}
	return st, nil
}

// checkLayout fails with ErrLayoutOutdated when the streams JetStream holds
// are not those of layout l: in layout 2, when the stream ORDERS holds
// events and does not say it is in layout 2, or when a migration is
// filling it (MetadataMigration), even while it is empty, or when its
// orders were migrated to partitions (it is their backup); in layout 3,
// when ORDERS still holds events (not migrated yet: its backup, marked
// MigratedToPartitions, is accepted), a partition is being filled by a
// migration, or a partition stream records another number of partitions.
// Any other empty stream is adopted as it is.
func checkLayout(ctx context.Context, js jetstream.JetStream, l Layout) error {
	stream, err := js.Stream(ctx, StreamName)
	switch {
	case isStreamMissing(err):
	case err != nil:
		return err
	default:
		info := stream.CachedInfo()
		if n, done := migratedTo(info.Config.Metadata); done {
			if !l.Partitioned() {
				return fmt.Errorf("%w: the orders were migrated to %s partitions (streams %s…); stream %s is only their backup: start this node with --partitions %s",
					ErrLayoutOutdated, n, Partition{Of: 1}.Stream(), StreamName, n)
			}
			break // the backup; the partitions are checked below
		}
		if marker := info.Config.Metadata[MetadataMigration]; marker != "" {
			return fmt.Errorf("%w: stream %s is being migrated (%s); see docs/subject-layout.md, \"Upgrading the stream layout\"",
				ErrLayoutOutdated, StreamName, marker)
		}
		have := info.Config.Metadata[MetadataLayout]
		if info.State.Msgs > 0 && (l.Partitioned() || have != UnpartitionedLayout) {
			return layoutError(have, info.State.Msgs, l)
		}
	}
	if !l.Partitioned() {
		return checkNotPartitioned(ctx, js)
	}
	for _, p := range l.All() {
		stream, err := js.Stream(ctx, p.Stream())
		if isStreamMissing(err) {
			continue
		}
		if err != nil {
			return err
		}
		meta := stream.CachedInfo().Config.Metadata
		if meta[MetadataMigration] != "" {
			return fmt.Errorf("%w: stream %s is being filled by a migration (%s); see docs/subject-layout.md, \"Migrating to partitions\"",
				ErrLayoutOutdated, p.Stream(), meta[MetadataMigration])
		}
		if have := meta[MetadataPartitions]; have != strconv.Itoa(l.Partitions) {
			return fmt.Errorf("%w: stream %s is a partition of a deployment of %s partitions, this node was started with %d; "+
				"start it with --partitions %s, or stop every node and run `ordersd migrate --partitions %d` to lay the orders out again "+
				"(see docs/subject-layout.md, \"Upgrading the stream layout\")",
				ErrLayoutOutdated, p.Stream(), have, l.Partitions, have, l.Partitions)
		}
	}
	return nil
}

// checkNotPartitioned fails with ErrLayoutOutdated when the orders are
// partitioned already (a node of layout 2 would otherwise start an empty
// stream ORDERS beside them).
func checkNotPartitioned(ctx context.Context, js jetstream.JetStream) error {
	stream, err := js.Stream(ctx, Partition{Of: 1}.Stream())
	switch {
	case isStreamMissing(err):
		return nil
	case err != nil:
		return err
	}
	have := stream.CachedInfo().Config.Metadata[MetadataPartitions]
	return fmt.Errorf("%w: the orders are in %s partitions (stream %s); start this node with --partitions %s",
		ErrLayoutOutdated, have, stream.CachedInfo().Config.Name, have)
}

// layoutError explains an outdated stream ORDERS and names the command
// that rewrites it.
func layoutError(have string, msgs uint64, l Layout) error {
	if have == "" {
		have = "1"
	}
	return fmt.Errorf("%w: stream %s holds %d events in subject layout %s, this ordersd reads layout %s "+
		"(%s); stop every ordersd node and run `ordersd migrate` "+
		"with the same NATS settings to rewrite it (see docs/subject-layout.md, \"Upgrading the stream layout\")",
		ErrLayoutOutdated, StreamName, msgs, have, l.Version(), l.All()[0].subjectForm())
}

// isStreamMissing reports whether err says the stream does not exist.
func isStreamMissing(err error) bool {
	return errors.Is(err, jetstream.ErrStreamNotFound)
}
