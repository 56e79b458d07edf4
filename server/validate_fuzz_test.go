package server

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/ordersd/ordersd/consumers"
	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
)

// FuzzRequestValidation decodes arbitrary bytes as each request type and
// validates it, as the handlers do: validation never panics, answers only
// INVALID_ARGUMENT or PERMISSION_DENIED, and what it lets through is safe
// to put in subjects and headers.
func FuzzRequestValidation(f *testing.F) {
	for _, m := range []proto.Message{
		&ordersv1.CreateOrderRequest{RequestId: "r", CustomerId: "c", CurrencyCode: "EUR", Items: []*ordersv1.LineItem{{Sku: "s", Quantity: 1, UnitPriceMinor: 5}}},
		&ordersv1.CreateOrderRequest{OrderId: "a.b", Items: []*ordersv1.LineItem{{Quantity: -1}}},
		&ordersv1.RejectOrderRequest{OrderId: "o", Reason: "why"},
		&ordersv1.ConsumeOrdersRequest{Consumer: "c", Statuses: []ordersv1.OrderStatus{1, 99}, MaxInFlight: 5},
		&ordersv1.WatchOrdersRequest{OrderId: "o", Start: &ordersv1.WatchOrdersRequest_StartSequence{StartSequence: 3}},
		&ordersv1.AckOrdersRequest{Acks: []*ordersv1.Ack{{AckToken: "x", Action: 2}}},
		// At and just past the limits: 64 for ids, 128 for request ids.
		&ordersv1.CreateOrderRequest{OrderId: strings.Repeat("o", 65), RequestId: strings.Repeat("r", 128), CustomerId: strings.Repeat("c", 64), CurrencyCode: "EUR", Items: []*ordersv1.LineItem{{Sku: "s", Quantity: 1, UnitPriceMinor: 5}}},
		&ordersv1.CreateOrderRequest{OrderId: strings.Repeat("o", 64), RequestId: strings.Repeat("r", 129), CustomerId: strings.Repeat("c", 65), CurrencyCode: "EUR", Items: []*ordersv1.LineItem{{Sku: "s", Quantity: 1, UnitPriceMinor: 5}}},
		&ordersv1.RejectOrderRequest{OrderId: strings.Repeat("o", 65), Reason: "why"},
		&ordersv1.ConsumeOrdersRequest{Consumer: strings.Repeat("c", 65)},
		&ordersv1.WatchOrdersRequest{OrderId: strings.Repeat("o", 65), CustomerId: strings.Repeat("c", 65)},
	} {
		data, _ := proto.Marshal(m)
		for kind := range byte(5) {
			f.Add(kind, data)
		}
	}
	tokens := consumers.RandomAckTokens()
	f.Fuzz(func(t *testing.T, kind byte, data []byte) {
		var err error
		// safe checks an id that reaches a subject or a header: order,
		// customer and consumer ids are at most eventstore.MaxIDLen (64),
		// request ids at most eventstore.MaxRequestIDLen (128).
		safe := func(id string, maxLen int, required bool) {
			if (id != "" || required) && !eventstore.ValidToken(id, maxLen) {
				t.Fatalf("let %q through (at most %d allow-listed characters)", id, maxLen)
			}
		}
		switch kind % 5 {
		case 0:
			req := &ordersv1.CreateOrderRequest{}
			if proto.Unmarshal(data, req) != nil {
				return
			}
			if err = validateCreate(req); err == nil {
				safe(req.GetOrderId(), eventstore.MaxIDLen, false)
				safe(req.GetCustomerId(), eventstore.MaxIDLen, true)
				safe(req.GetRequestId(), eventstore.MaxRequestIDLen, false)
			}
		case 1:
			req := &ordersv1.RejectOrderRequest{}
			if proto.Unmarshal(data, req) != nil {
				return
			}
			if err = validateTransition(req, req.GetReason(), reasonRequired); err == nil {
				safe(req.GetOrderId(), eventstore.MaxIDLen, true)
				safe(req.GetRequestId(), eventstore.MaxRequestIDLen, false)
			}
		case 2:
			req := &ordersv1.ConsumeOrdersRequest{}
			if proto.Unmarshal(data, req) != nil {
				return
			}
			var spec consumers.ConsumeSpec
			if spec, err = consumeSpec(req); err == nil {
				safe(spec.Consumer, eventstore.MaxIDLen, true)
				if spec.MaxInFlight < 1 || spec.Heartbeat <= 0 {
					t.Fatalf("accepted %+v", spec)
				}
			}
		case 3:
			req := &ordersv1.WatchOrdersRequest{}
			if proto.Unmarshal(data, req) != nil {
				return
			}
			var spec consumers.WatchSpec
			if spec, err = watchSpec(req); err == nil {
				safe(spec.OrderID, eventstore.MaxIDLen, false)
				safe(spec.CustomerID, eventstore.MaxIDLen, false)
			}
		case 4:
			req := &ordersv1.AckOrdersRequest{}
			if proto.Unmarshal(data, req) != nil {
				return
			}
			_, err = ackSettles(req, tokens)
		}
		if c := status.Code(err); err != nil && c != codes.InvalidArgument && c != codes.PermissionDenied {
			t.Fatalf("validation answered %v", err)
		}
		var st interface{ GRPCStatus() *status.Status }
		if err != nil && !errors.As(err, &st) {
			t.Fatalf("validation error %v is not a status", err)
		}
	})
}
