package eventstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The order-id index: one message per order on ORDER_IDS.<order_id>, whose
// payload is the order's customer id.
//
// Why it exists: events are stored on ORDERS.<event>.<customer_id>.<order_id>
// so that JetStream can select one customer's events. A call that names only
// an order (GetOrder, the transitions, GetOrderHistory) would then have to
// match ORDERS.*.*.<order_id>, and JetStream matches a '*' by walking every
// value stored at that token: every customer. Such a read, and the create's
// uniqueness check (which runs inside the stream leader, holding up every
// other write), would cost more with every customer stored (the figures
// are in docs/subject-layout.md).
// The index turns the order id into its customer with one read of a literal
// subject, so every per-order operation stays as cheap as it was, whatever
// the number of customers.
//
// A create writes its index entry first, expecting none (so an order id is
// taken once across all customers), and then its created event. A create that
// dies in between leaves an entry with no order: the id stays reserved for
// that customer, and the next create of that id for that customer completes
// it. A retried create without an order id gets a new id, and so a new
// entry, before the duplicate window recognises its event: that entry names
// an id no one was ever given. Entries are never changed or deleted.
const (
	IndexStreamName = "ORDER_IDS"
	// indexSubjects are the subjects ORDER_IDS captures: one token after
	// the prefix, as an order id is one token.
	indexSubjects = IndexStreamName + ".*"
)

// IndexSubject is the subject of an order's index entry.
func IndexSubject(orderID string) string {
	return Partition{}.ClaimSubject(orderID)
}

// IndexEntry is the message of a new order's index entry, and the publish
// option that makes it fail when the order id is taken. Create writes it
// before the created event; the benchmark's direct client does the same.
func IndexEntry(k OrderKey) (*nats.Msg, jetstream.PublishOpt) {
	return Partition{}.ClaimEntry(k)
}

// ClaimEntry is IndexEntry in partition p: the claim of an order id in
// the order's partition.
func (p Partition) ClaimEntry(k OrderKey) (*nats.Msg, jetstream.PublishOpt) {
	msg := nats.NewMsg(p.ClaimSubject(k.OrderID))
	msg.Data = []byte(k.CustomerID)
	return msg, jetstream.WithExpectLastSequenceForSubject(0, msg.Subject)
}

// IndexStreamConfig is the stream ORDER_IDS: like ORDERS, replicated, read
// from its leader (a read after a create sees the entry), never pruned.
func (o StreamOptions) IndexStreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              IndexStreamName,
		Description:       "ordersd order-id index: ORDER_IDS.<order_id>, payload the order's customer_id",
		Subjects:          []string{indexSubjects},
		Storage:           jetstream.FileStorage,
		Retention:         jetstream.LimitsPolicy,
		Replicas:          o.Replicas,
		MaxMsgsPerSubject: 1,
		DenyDelete:        true,
		DenyPurge:         true,
		AllowDirect:       false,
	}
}

// claim writes the claim of a new order's id (its index entry), or accepts the one that is
// there when it names the same customer (an earlier attempt of this create,
// or one that died before its event: the created event's own expected
// sequence then decides). An order id of another customer is
// ErrAlreadyExists.
func (s *Store) claim(ctx context.Context, st partitionStreams, k OrderKey) error {
	msg, expectNew := st.ClaimEntry(k)
	future, err := s.sendAsync(msg, expectNew)
	if err != nil {
		return s.classify(err)
	}
	_, err = s.awaitAck(ctx, future)
	if !IsWrongLastSequence(err) {
		return s.classify(err)
	}
	customer, err := s.customerOf(ctx, st, k.OrderID)
	if err != nil {
		return s.classify(err)
	}
	if customer != k.CustomerID {
		return fmt.Errorf("%w: order %s", ErrAlreadyExists, k.OrderID)
	}
	return nil
}

// Locate returns the key of an order from the order-id index; ErrNotFound
// when the order id was never taken.
func (s *Store) Locate(ctx context.Context, orderID string) (OrderKey, error) {
	ctx, cancel, st, err := s.begin(ctx)
	if err != nil {
		return OrderKey{}, err
	}
	defer cancel()
	key, err := s.locate(ctx, st.of(s.layout.Of(orderID)), orderID)
	return key, s.classify(err)
}

// locate returns the key of an order from the index; ErrNotFound when the
// order id was never taken.
func (s *Store) locate(ctx context.Context, st partitionStreams, orderID string) (OrderKey, error) {
	if !ValidToken(orderID, MaxIDLen) {
		return OrderKey{}, fmt.Errorf("%w: order id %q is not subject-safe", ErrInvalidArgument, orderID)
	}
	customer, err := s.customerOf(ctx, st, orderID)
	if err != nil {
		return OrderKey{}, err
	}
	return OrderKey{CustomerID: customer, OrderID: orderID}, nil
}

// customerOf reads an order's index entry.
func (s *Store) customerOf(ctx context.Context, st partitionStreams, orderID string) (string, error) {
	raw, err := st.claims.GetLastMsgForSubject(ctx, st.ClaimSubject(orderID))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return "", fmt.Errorf("%w: %s", ErrNotFound, orderID)
	}
	if err != nil {
		return "", err
	}
	customer := string(raw.Data)
	if !ValidToken(customer, MaxIDLen) {
		return "", fmt.Errorf("%w: index entry of order %s names customer %q", ErrCorruptEvent, orderID, customer)
	}
	return customer, nil
}
