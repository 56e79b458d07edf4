package server

import (
	"context"
	"crypto/rand"
	"log/slog"

	"github.com/ordersd/ordersd/consumers"
	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
)

// OrderStore is what the service needs of the event store.
type OrderStore interface {
	Create(ctx context.Context, in eventstore.NewOrder) (eventstore.Result, error)
	CreateAsync(ctx context.Context, in eventstore.NewOrder) (*eventstore.PendingCreate, error)
	Transition(ctx context.Context, c eventstore.Change) (eventstore.Result, error)
	Get(ctx context.Context, orderID string) (*ordersv1.Order, error)
	History(ctx context.Context, orderID string, send func(*ordersv1.OrderEvent) error, skipped func(*eventstore.UnreadableError) error) error
	List(ctx context.Context, req eventstore.ListRequest) (eventstore.ListPage, error)
	Epoch(ctx context.Context) (eventstore.Epoch, error)
	Epochs(ctx context.Context) ([]eventstore.Epoch, error)
	Layout() eventstore.Layout
}

// WorkQueues serves ConsumeOrders streams (consumers.WorkQueues).
type WorkQueues interface {
	Consume(ctx context.Context, spec consumers.ConsumeSpec, send func(consumers.Delivery) error) error
	NewSession(spec consumers.ConsumeSpec) *consumers.Session
}

// AckTokenVerifier checks ack tokens (consumers.AckTokens).
type AckTokenVerifier interface {
	Verify(token string) (consumers.AckSubject, error)
}

// Acker applies verified acks (consumers.Acker).
type Acker interface {
	Apply(ctx context.Context, settles []consumers.Settle) []consumers.SettleResult
	Pipeline(done func(tag any, r consumers.SettleResult)) (*consumers.AckPipeline, error)
}

// Watcher serves WatchOrders streams (consumers.Watcher).
type Watcher interface {
	Watch(ctx context.Context, spec consumers.WatchSpec, send func(consumers.WatchUpdate) error) error
}

// Deps are what the OrderService is built on.
type Deps struct {
	Store      OrderStore
	WorkQueues WorkQueues
	Tokens     AckTokenVerifier
	Acker      Acker
	Watcher    Watcher
	// PageTokens sign ListOrders page tokens; a random key when nil (tokens
	// then work only on this process).
	PageTokens *PageTokens
	// Stopping is done when the node begins to shut down; long-lived streams
	// end then. Optional.
	Stopping context.Context
	// MaxWatchers and MaxConsumers bound the WatchOrders and ConsumeOrders
	// streams served at once; 0 means no limit.
	MaxWatchers, MaxConsumers int
}

// OrderService implements ordersv1.OrderServiceServer.
type OrderService struct {
	ordersv1.UnimplementedOrderServiceServer
	Deps
	log       *slog.Logger
	watching  *slots
	consuming *slots
}

// NewOrderService returns the OrderService built on d.
func NewOrderService(d Deps, log *slog.Logger) *OrderService {
	if d.PageTokens == nil {
		key := make([]byte, 32)
		_, _ = rand.Read(key) // crypto/rand.Read never fails
		d.PageTokens = NewPageTokens(key)
	}
	return &OrderService{Deps: d, log: log,
		watching: newSlots("WatchOrders streams", d.MaxWatchers), consuming: newSlots("ConsumeOrders streams", d.MaxConsumers)}
}

// CreateOrder implements ordersv1.OrderServiceServer.
func (s *OrderService) CreateOrder(ctx context.Context, req *ordersv1.CreateOrderRequest) (*ordersv1.CreateOrderResponse, error) {
	if err := validateCreate(req); err != nil {
		return nil, err
	}
	res, err := s.Store.Create(ctx, newOrder(req))
	if err != nil {
		return nil, toStatus(ctx, s.log, req.GetOrderId(), err)
	}
	return &ordersv1.CreateOrderResponse{Order: res.Order, Duplicate: res.Duplicate}, nil
}

// newOrder is the store's input for a validated create request.
func newOrder(req *ordersv1.CreateOrderRequest) eventstore.NewOrder {
	return eventstore.NewOrder{
		RequestID:    req.GetRequestId(),
		OrderID:      req.GetOrderId(),
		CustomerID:   req.GetCustomerId(),
		Items:        req.GetItems(),
		CurrencyCode: req.GetCurrencyCode(),
	}
}

// GetOrder implements ordersv1.OrderServiceServer.
func (s *OrderService) GetOrder(ctx context.Context, req *ordersv1.GetOrderRequest) (*ordersv1.GetOrderResponse, error) {
	if err := validateOrderID(req.GetOrderId()); err != nil {
		return nil, err
	}
	order, err := s.Store.Get(ctx, req.GetOrderId())
	if err != nil {
		return nil, toStatus(ctx, s.log, req.GetOrderId(), err)
	}
	return &ordersv1.GetOrderResponse{Order: order}, nil
}

// ApproveOrder implements ordersv1.OrderServiceServer.
func (s *OrderService) ApproveOrder(ctx context.Context, req *ordersv1.ApproveOrderRequest) (*ordersv1.ApproveOrderResponse, error) {
	res, err := s.transition(ctx, req, ordersv1.OrderStatus_ORDER_STATUS_APPROVED, "", reasonNone)
	if err != nil {
		return nil, err
	}
	return &ordersv1.ApproveOrderResponse{Order: res.Order, Duplicate: res.Duplicate}, nil
}

// RejectOrder implements ordersv1.OrderServiceServer.
func (s *OrderService) RejectOrder(ctx context.Context, req *ordersv1.RejectOrderRequest) (*ordersv1.RejectOrderResponse, error) {
	res, err := s.transition(ctx, req, ordersv1.OrderStatus_ORDER_STATUS_REJECTED, req.GetReason(), reasonRequired)
	if err != nil {
		return nil, err
	}
	return &ordersv1.RejectOrderResponse{Order: res.Order, Duplicate: res.Duplicate}, nil
}

// PayOrder implements ordersv1.OrderServiceServer.
func (s *OrderService) PayOrder(ctx context.Context, req *ordersv1.PayOrderRequest) (*ordersv1.PayOrderResponse, error) {
	res, err := s.transition(ctx, req, ordersv1.OrderStatus_ORDER_STATUS_PAID, "", reasonNone)
	if err != nil {
		return nil, err
	}
	return &ordersv1.PayOrderResponse{Order: res.Order, Duplicate: res.Duplicate}, nil
}

// ShipOrder implements ordersv1.OrderServiceServer.
func (s *OrderService) ShipOrder(ctx context.Context, req *ordersv1.ShipOrderRequest) (*ordersv1.ShipOrderResponse, error) {
	res, err := s.transition(ctx, req, ordersv1.OrderStatus_ORDER_STATUS_SHIPPED, "", reasonNone)
	if err != nil {
		return nil, err
	}
	return &ordersv1.ShipOrderResponse{Order: res.Order, Duplicate: res.Duplicate}, nil
}

// CancelOrder implements ordersv1.OrderServiceServer.
func (s *OrderService) CancelOrder(ctx context.Context, req *ordersv1.CancelOrderRequest) (*ordersv1.CancelOrderResponse, error) {
	res, err := s.transition(ctx, req, ordersv1.OrderStatus_ORDER_STATUS_CANCELLED, req.GetReason(), reasonOptional)
	if err != nil {
		return nil, err
	}
	return &ordersv1.CancelOrderResponse{Order: res.Order, Duplicate: res.Duplicate}, nil
}

// transition is the one path of every transition RPC: validate, then let
// the store check and apply the change.
func (s *OrderService) transition(ctx context.Context, req transitionRequest, to ordersv1.OrderStatus, reason string, rule reasonRule) (eventstore.Result, error) {
	if err := validateTransition(req, reason, rule); err != nil {
		return eventstore.Result{}, err
	}
	res, err := s.Store.Transition(ctx, eventstore.Change{
		OrderID:          req.GetOrderId(),
		RequestID:        req.GetRequestId(),
		ExpectedRevision: req.GetExpectedRevision(),
		To:               to,
		Reason:           reason,
	})
	if err != nil {
		return eventstore.Result{}, toStatus(ctx, s.log, req.GetOrderId(), err)
	}
	return res, nil
}
