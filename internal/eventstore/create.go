package eventstore

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// NewOrder is the input of Create. Callers validate it first (see package
// server); the store re-checks only what would be unsafe to store.
type NewOrder struct {
	RequestID    string // optional idempotency key
	OrderID      string // optional; a ULID is made when empty
	CustomerID   string
	Items        []*ordersv1.LineItem
	CurrencyCode string
}

// Create stores a new order as its created event. The event is published
// with an expected last sequence of 0 on ORDERS.*.<id>, so an order id can
// be taken only once; a retried request is answered with the original order.
func (s *Store) Create(ctx context.Context, in NewOrder) (Result, error) {
	order, msg, err := s.createdEvent(in)
	if err != nil {
		return Result{}, err
	}
	ctx, cancel, stream, err := s.begin(ctx)
	if err != nil {
		return Result{}, err
	}
	defer cancel()
	ack, err := s.publish(ctx, msg, ExpectRevision(order.GetOrderId(), 0))
	return s.settleCreate(ctx, stream, in, order, ack, err)
}

// PendingCreate is a create whose event is on its way to JetStream.
type PendingCreate struct {
	store     *Store
	in        NewOrder
	order     *ordersv1.Order
	published asyncPublish
}

// CreateAsync publishes a new order's created event without waiting for
// JetStream's answer, so that many creates can be in flight at once over
// one connection; Wait gives the same result Create would have. Every
// check of Create applies: the expected sequence, the request id, the
// resolution of retries.
func (s *Store) CreateAsync(ctx context.Context, in NewOrder) (*PendingCreate, error) {
	order, msg, err := s.createdEvent(in)
	if err != nil {
		return nil, err
	}
	published, err := s.publishAsync(ctx, msg, order.GetOrderId(), 0)
	if err != nil {
		return nil, err
	}
	return &PendingCreate{store: s, in: in, order: order, published: published}, nil
}

// Wait returns the create's result once JetStream has answered, or
// ErrUnavailable if it does not within the store's timeout (the outcome is
// then unknown: retry with the same request id).
func (p *PendingCreate) Wait(ctx context.Context) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, p.store.opTimeout)
	defer cancel()
	ack, err := p.published.await(ctx)
	return p.store.settleCreate(ctx, p.published.stream, p.in, p.order, ack, err)
}

// createdEvent builds a new order and the message of its created event.
func (s *Store) createdEvent(in NewOrder) (*ordersv1.Order, *nats.Msg, error) {
	total, err := orderTotal(in.Items)
	if err != nil {
		return nil, nil, err
	}
	orderID := in.OrderID
	if orderID == "" {
		orderID = s.newID()
	}
	now := timestamppb.New(s.now())
	order := &ordersv1.Order{
		OrderId:      orderID,
		CustomerId:   in.CustomerID,
		Status:       ordersv1.OrderStatus_ORDER_STATUS_CREATED,
		Items:        in.Items,
		CurrencyCode: in.CurrencyCode,
		TotalMinor:   total,
		CreateTime:   now,
		UpdateTime:   now,
	}
	msg, err := EncodeEvent(order, in.RequestID)
	if err != nil {
		return nil, nil, err
	}
	return order, msg, nil
}

// settleCreate turns JetStream's answer to a created event into the
// create's result.
func (s *Store) settleCreate(ctx context.Context, stream jetstream.Stream, in NewOrder, order *ordersv1.Order, ack *jetstream.PubAck, err error) (Result, error) {
	switch {
	case isWrongLastSequence(err):
		// The order id is taken: by this very request (a retry) or another.
		if prior, ok, err := s.eventWithRequest(ctx, stream, ordersv1.OrderStatus_ORDER_STATUS_CREATED, order.GetOrderId(), in.RequestID); err != nil || ok {
			return prior, s.classify(err)
		}
		return Result{}, fmt.Errorf("%w: order %s", ErrAlreadyExists, order.GetOrderId())
	case err != nil:
		return Result{}, s.classify(err)
	case ack.Duplicate:
		// A retry of a create whose order id the server made up: the
		// duplicate window knows the original event.
		return s.duplicateAt(ctx, stream, ack.Sequence, in.RequestID, in.OrderID)
	}
	order.Revision = ack.Sequence
	return Result{Order: order}, nil
}
