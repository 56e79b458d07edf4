package server

import (
	"context"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
)

// ListOrders implements ordersv1.OrderServiceServer.
func (s *OrderService) ListOrders(ctx context.Context, req *ordersv1.ListOrdersRequest) (*ordersv1.ListOrdersResponse, error) {
	list, issued, err := s.validateList(req)
	if err != nil {
		return nil, err
	}
	epochs, err := s.Store.Epochs(ctx)
	if err != nil {
		return nil, toStatus(ctx, s.log, req.GetCustomerId(), err)
	}
	if req.GetPageToken() != "" {
		if err := checkPageEpochs(issued, epochs); err != nil {
			var v violations
			v.add("page_token", "%v", err)
			return nil, v.err()
		}
	}
	page, err := s.Store.List(ctx, list)
	if err != nil {
		return nil, toStatus(ctx, s.log, req.GetCustomerId(), err)
	}
	res := &ordersv1.ListOrdersResponse{Orders: page.Orders}
	for _, u := range page.Unreadable {
		res.UnreadableOrders = append(res.UnreadableOrders, u.Proto())
	}
	if page.Next != nil {
		res.NextPageToken = s.PageTokens.sign(req, epochs, page.Next)
	}
	return res, nil
}

// validateList checks a ListOrders request and turns it into the store's.
// It returns the epochs the page token was issued in, if there is one.
func (s *OrderService) validateList(req *ordersv1.ListOrdersRequest) (eventstore.ListRequest, []eventstore.Epoch, error) {
	var v violations
	v.id("customer_id", req.GetCustomerId(), eventstore.MaxIDLen, false)
	v.statuses("statuses", req.GetStatuses())
	size := int(req.GetPageSize())
	switch {
	case size == 0:
		size = eventstore.DefaultPageSize
	case size < 0 || size > eventstore.MaxPageSize:
		v.add("page_size", "must be 1 to %d (0: %d), got %d", eventstore.MaxPageSize, eventstore.DefaultPageSize, size)
	}
	var (
		after  eventstore.Cursor
		issued []eventstore.Epoch
	)
	if token := req.GetPageToken(); token != "" {
		var err error
		if after, issued, err = s.PageTokens.verify(req, token); err != nil {
			v.add("page_token", "%v", err)
		}
	}
	return eventstore.ListRequest{CustomerID: req.GetCustomerId(), Statuses: req.GetStatuses(), After: after, PageSize: size}, issued, v.err()
}
