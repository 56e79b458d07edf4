package eventstore

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"
)

// A Companion keeps streams of its own beside ORDERS that follow the
// store's durable consumers: the dead letters and redrive markers of the
// work queues (package deadletters). The store provisions the companion's
// streams each time it provisions its own, and tells it of each change it
// makes to a durable consumer, so that the package holds no knowledge of
// them.
type Companion interface {
	// Provision creates or updates the companion's streams, after ORDERS
	// and ORDER_IDS; an error fails the store's provisioning, which is
	// tried again on next use.
	Provision(ctx context.Context) error
	// ConsumerUpdated follows the update of the durable consumer
	// cfg.Durable to cfg.
	ConsumerUpdated(ctx context.Context, cfg jetstream.ConsumerConfig)
	// ConsumerDeleted follows the deletion of the durable consumer name.
	ConsumerDeleted(ctx context.Context, name string)
}

// Accompany makes c a companion of the store. The streams are provisioned
// again on next use, c's with them.
func (s *Store) Accompany(c Companion) {
	s.provisionMu.Lock()
	defer s.provisionMu.Unlock()
	have := s.companions.Load()
	with := []Companion{c}
	if have != nil {
		with = append(append([]Companion(nil), *have...), c)
	}
	s.companions.Store(&with)
	s.ProvisionAgain()
}

// companionsNow are the store's companions.
func (s *Store) companionsNow() []Companion {
	if c := s.companions.Load(); c != nil {
		return *c
	}
	return nil
}

// EnsureStreams fails fast while NATS is disconnected and makes sure the
// streams exist, provisioning them (and the companions') when this process
// does not know they do; when it does, it asks JetStream nothing.
// Companions call it before their own work.
func (s *Store) EnsureStreams(ctx context.Context) error {
	_, cancel, _, err := s.begin(ctx)
	if err != nil {
		return err
	}
	cancel()
	return nil
}

// ProvisionAgain makes the next call provision the streams again, the
// companions' with them (a companion found one of its streams deleted).
func (s *Store) ProvisionAgain() {
	s.provisioned.Store(false)
	s.streams.Store(nil)
}

// Classify is the package's Classify for the errors of work on the
// store's streams: when a stream is gone, the store also forgets its
// handles, so that they are looked up (or provisioned) again on next use.
func (s *Store) Classify(err error) error { return s.classify(err) }
