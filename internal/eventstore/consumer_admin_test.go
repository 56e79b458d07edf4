package eventstore

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The consumer administration speaks the store's terms, JetStream's rules
// applied inside: one filter subject or several read as Filters, no limit
// on deliveries is 0 (JetStream's -1), backoff steps set the ack wait to
// the first, JetStream's refusal of settings together is
// ErrInvalidArgument, and a missing consumer ErrConsumerNotFound.
func TestConsumerAdministrationKeepsJetStreamsRulesInside(t *testing.T) {
	js, log := startJetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store, err := New(js, Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	created := StreamName + ".created.*.*"
	if _, err := store.CreateOrUpdateConsumers(ctx, jetstream.ConsumerConfig{Durable: "admin", FilterSubject: created,
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second, MaxDeliver: -1}); err != nil {
		t.Fatal(err)
	}
	jsConfig := func() jetstream.ConsumerConfig {
		t.Helper()
		stream, err := js.Stream(ctx, StreamName)
		if err != nil {
			t.Fatal(err)
		}
		cons, err := stream.Consumer(ctx, "admin")
		if err != nil {
			t.Fatal(err)
		}
		return cons.CachedInfo().Config
	}

	c, err := store.Consumer(ctx, "admin")
	if err != nil || c.Name != "admin" || !slices.Equal(c.Filters, []string{created}) || c.MaxDeliveries != 0 || c.AckWait != 30*time.Second || c.Created.IsZero() {
		t.Fatalf("Consumer = %+v, %v; want admin on %s, no delivery limit, 30s ack wait", c, err, created)
	}

	five, backoff := 5, []time.Duration{2 * time.Second, 4 * time.Second}
	c, err = store.UpdateConsumer(ctx, "admin", ConsumerChange{MaxDeliveries: &five, Backoff: &backoff})
	if err != nil || c.MaxDeliveries != 5 || !slices.Equal(c.Backoff, backoff) || c.AckWait != 2*time.Second {
		t.Fatalf("UpdateConsumer(max 5, backoff 2s 4s) = %+v, %v; want the backoff, ack wait 2s", c, err)
	}

	unlimited, none := 0, []time.Duration{}
	c, err = store.UpdateConsumer(ctx, "admin", ConsumerChange{MaxDeliveries: &unlimited, Backoff: &none})
	if err != nil || c.MaxDeliveries != 0 || len(c.Backoff) != 0 {
		t.Fatalf("UpdateConsumer(no limit, no backoff) = %+v, %v", c, err)
	}
	if cfg := jsConfig(); cfg.MaxDeliver != -1 || len(cfg.BackOff) != 0 {
		t.Fatalf("JetStream's config after no limit: max deliver %d, backoff %v; want -1 and none", cfg.MaxDeliver, cfg.BackOff)
	}

	negative := -time.Second
	if _, err := store.UpdateConsumer(ctx, "admin", ConsumerChange{AckWait: &negative, MaxDeliveries: &five}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("UpdateConsumer(negative ack wait) = %v, want ErrInvalidArgument", err)
	}
	if cfg := jsConfig(); cfg.MaxDeliver != -1 {
		t.Errorf("a refused change was applied: max deliver %d", cfg.MaxDeliver)
	}

	if _, err := store.Consumer(ctx, "none"); !errors.Is(err, ErrConsumerNotFound) {
		t.Errorf("Consumer(none) = %v, want ErrConsumerNotFound", err)
	}
	if _, err := store.UpdateConsumer(ctx, "none", ConsumerChange{MaxDeliveries: &five}); !errors.Is(err, ErrConsumerNotFound) {
		t.Errorf("UpdateConsumer(none) = %v, want ErrConsumerNotFound", err)
	}
	durables, err := store.Durables(ctx)
	if err != nil || len(durables) != 1 || durables[0].Name != "admin" {
		t.Errorf("Durables = %+v, %v; want admin alone", durables, err)
	}
}
