package client

import (
	"context"
	"crypto/rand"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// NewRequestID returns a fresh idempotency key for a write's request_id:
// 26 random letters and digits (128 bits). Give one to a write that you
// retry yourself, after the client has given up on it, so that the retry
// is recognised as the same request.
func NewRequestID() string { return rand.Text() }

// requestIDField is the name of the idempotency key in every write request
// of the API (AIP-155).
const requestIDField protoreflect.Name = "request_id"

// withRequestID returns req, or a copy of it with a generated request_id
// when req has that field and it is empty. The caller's message is never
// changed: gRPC retries send the copy again, with the same id.
func withRequestID(req any) any {
	m, ok := req.(proto.Message)
	if !ok {
		return req
	}
	fd := m.ProtoReflect().Descriptor().Fields().ByName(requestIDField)
	if fd == nil || fd.Kind() != protoreflect.StringKind || m.ProtoReflect().Get(fd).String() != "" {
		return req
	}
	c := proto.Clone(m)
	c.ProtoReflect().Set(fd, protoreflect.ValueOfString(NewRequestID()))
	return c
}

// withOrderRequestID fills in the request_id of one order of a
// CreateOrders stream.
func withOrderRequestID(msg any) any {
	r, ok := msg.(*ordersv1.CreateOrdersRequest)
	if !ok || r.GetOrder() == nil || r.GetOrder().GetRequestId() != "" {
		return msg
	}
	c := proto.Clone(r).(*ordersv1.CreateOrdersRequest)
	c.Order.RequestId = NewRequestID()
	return c
}

// requestIDUnary gives every unary write a request_id before it is sent
// (and so before any retry).
func requestIDUnary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return invoker(ctx, method, withRequestID(req), reply, cc, opts...)
}

// requestIDStream does the same for each order sent on a CreateOrders stream.
func requestIDStream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	s, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil || method != ordersv1.OrderService_CreateOrders_FullMethodName {
		return s, err
	}
	return requestIDSender{s}, nil
}

type requestIDSender struct{ grpc.ClientStream }

func (s requestIDSender) SendMsg(m any) error { return s.ClientStream.SendMsg(withOrderRequestID(m)) }
