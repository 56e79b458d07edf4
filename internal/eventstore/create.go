package eventstore

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// NewOrder is the input of Create. Callers validate it first (see package
// server); the store re-checks only what would be unsafe to store.
type NewOrder struct {
	RequestID    string // optional idempotency key
	OrderID      string // optional; made when empty: OrderIDOf(RequestID), or a ULID without a request id
	CustomerID   string
	Items        []*ordersv1.LineItem
	CurrencyCode string
}

// Create stores a new order in its partition: the claim of its order id
// (expecting none, so an order id is taken once across all customers),
// then its created event, published with an expected last sequence of 0
// on the order's subjects. A retried request is answered with the
// original order: an order id the server makes for a request id is
// derived from it (OrderIDOf), so every attempt of the request claims the
// same id, in the same partition, however long after the first.
func (s *Store) Create(ctx context.Context, in NewOrder) (Result, error) {
	return s.create(ctx, in, createTurn{})
}

// create is Create, whose created event waits for its turn (see createTurn).
func (s *Store) create(ctx context.Context, in NewOrder, turn createTurn) (Result, error) {
	defer turn.pass() // whatever happens, the next create does not wait for this one
	order, msg, err := s.createdEvent(in)
	if err != nil {
		return Result{}, err
	}
	ctx, cancel, st, err := s.begin(ctx)
	if err != nil {
		return Result{}, err
	}
	defer cancel()
	part := st.of(s.layout.Of(order.GetOrderId()))
	if err := s.claim(ctx, part, KeyOf(order)); err != nil {
		if in.OrderID == "" && errors.Is(err, ErrAlreadyExists) {
			// The id was derived from the request id: another customer's
			// create used that request id first.
			return Result{}, fmt.Errorf("%w: %q created order %s of another customer", ErrRequestIDReused, in.RequestID, order.GetOrderId())
		}
		return Result{}, err
	}
	if err := turn.wait(ctx); err != nil {
		return Result{}, s.classify(err)
	}
	ack, err := s.publishThen(ctx, msg, turn.pass, s.layout.ExpectRevision(KeyOf(order), 0))
	return s.settleCreate(ctx, part, in, order, ack, err)
}

// createTurn keeps the created events of CreateAsync calls in call order:
// each is handed to the connection only once the previous call's has been
// (or that call gave up), while their index entries, whose order decides
// nothing, are written concurrently. A CreateOrders stream thus stores its
// orders in request order, and a retry sent right behind its original is
// the one answered as the duplicate. The zero createTurn waits for nothing.
type createTurn struct {
	prev <-chan struct{} // closed once the previous call's event is sent
	mine chan struct{}   // closed once this call's event is sent
	once *sync.Once
}

// nextCreateTurn is the turn of a new CreateAsync call, after every
// earlier one.
func (s *Store) nextCreateTurn() createTurn {
	s.createTurnMu.Lock()
	defer s.createTurnMu.Unlock()
	t := createTurn{prev: s.lastCreateTurn, mine: make(chan struct{}), once: new(sync.Once)}
	s.lastCreateTurn = t.mine
	return t
}

// wait returns once the previous call's event is sent, or ctx ends.
func (t createTurn) wait(ctx context.Context) error {
	if t.prev == nil {
		return nil
	}
	select {
	case <-t.prev:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// pass lets the next call send its event.
func (t createTurn) pass() {
	if t.mine != nil {
		t.once.Do(func() { close(t.mine) })
	}
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
// it runs Create rather than pipelining its messages; the created events
// of successive calls are stored in call order (see createTurn).
func (s *Store) CreateAsync(ctx context.Context, in NewOrder) (*PendingCreate, error) {
	if !s.js.Conn().IsConnected() {
		return nil, fmt.Errorf("%w: not connected to NATS (%s)", ErrUnavailable, s.js.Conn().Status())
	}
	p := &PendingCreate{done: make(chan struct{})}
	turn := s.nextCreateTurn()
	go func() {
		defer close(p.done)
		p.result, p.err = s.create(context.WithoutCancel(ctx), in, turn)
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
	switch {
	case orderID == "" && in.RequestID != "":
		orderID = OrderIDOf(in.RequestID)
	case orderID == "":
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
	msg, err := s.layout.EncodeEvent(order, in.RequestID)
	if err != nil {
		return nil, nil, err
	}
	return order, msg, nil
}

// settleCreate turns JetStream's answer to a created event into the
// create's result.
func (s *Store) settleCreate(ctx context.Context, part partitionStreams, in NewOrder, order *ordersv1.Order, ack *jetstream.PubAck, err error) (Result, error) {
	switch {
	case IsWrongLastSequence(err):
		// The order id is taken: by this very request (a retry) or another.
		if prior, ok, err := s.eventWithRequest(ctx, part, ordersv1.OrderStatus_ORDER_STATUS_CREATED, KeyOf(order), in.RequestID); err != nil || ok {
			return prior, s.classify(err)
		}
		return Result{}, fmt.Errorf("%w: order %s", ErrAlreadyExists, order.GetOrderId())
	case err != nil:
		return Result{}, s.classify(err)
	case ack.Duplicate:
		// A retry of a create whose order id the server made up: the
		// duplicate window knows the original event.
		return s.duplicateAt(ctx, part, ack.Sequence, in.RequestID, in.OrderID)
	}
	order.Revision = ack.Sequence
	return Result{Order: order}, nil
}
