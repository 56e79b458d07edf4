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

// Create stores a new order: its entry in the order-id index (expecting
// none, so an order id is taken once across all customers), then its
// created event, published with an expected last sequence of 0 on
// ORDERS.*.<customer_id>.<order_id>. A retried request is answered with the
// original order.
func (s *Store) Create(ctx context.Context, in NewOrder) (Result, error) {
	order, msg, err := s.createdEvent(in)
	if err != nil {
		return Result{}, err
	}
	ctx, cancel, st, err := s.begin(ctx)
	if err != nil {
		return Result{}, err
	}
	defer cancel()
	if err := s.claim(ctx, st, KeyOf(order)); err != nil {
		return Result{}, err
	}
	ack, err := s.publish(ctx, msg, ExpectRevision(KeyOf(order), 0))
	return s.settleCreate(ctx, st.orders, in, order, ack, err)
}

// PendingCreate is a create under way (see CreateAsync).
type PendingCreate struct {
	done   chan struct{}
	result Result
	err    error
}

// CreateAsync starts a create and returns at once, so that many creates can
// be in flight together: their writes share the connection's asynchronous
// publisher. Wait gives the result Create gives. The create's own two
// writes stay in order (the index entry before the event), which is why
// it runs Create rather than pipelining its messages.
func (s *Store) CreateAsync(ctx context.Context, in NewOrder) (*PendingCreate, error) {
	if !s.js.Conn().IsConnected() {
		return nil, fmt.Errorf("%w: not connected to NATS (%s)", ErrUnavailable, s.js.Conn().Status())
	}
	p := &PendingCreate{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.result, p.err = s.Create(context.WithoutCancel(ctx), in)
	}()
	return p, nil
}

// Wait returns the create's result, or ctx's error if ctx ends first (the
// outcome is then unknown: retry with the same request id). The create
// itself is bounded by the store's timeout.
func (p *PendingCreate) Wait(ctx context.Context) (Result, error) {
	select {
	case <-p.done:
		return p.result, p.err
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
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
		if prior, ok, err := s.eventWithRequest(ctx, stream, ordersv1.OrderStatus_ORDER_STATUS_CREATED, KeyOf(order), in.RequestID); err != nil || ok {
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
