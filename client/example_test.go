package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ordersd/ordersd/client"
	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// Dial one node (or "host1:50051,host2:50051" for several), create an
// order, and retry a write safely with a request id of your own.
func ExampleDial() {
	c, err := client.Dial(ordersdAddr, client.WithInsecure())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// No request_id: the client generates one, so the retries gRPC makes
	// on another node when this one fails store the order once.
	res, err := c.CreateOrder(ctx, &ordersv1.CreateOrderRequest{
		CustomerId:   "alice",
		CurrencyCode: "EUR",
		Items:        []*ordersv1.LineItem{{Sku: "BOOK-42", Quantity: 2, UnitPriceMinor: 1250}},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.GetOrder().GetStatus(), res.GetOrder().GetTotalMinor())

	// A write you may retry yourself, after the client gave up on it,
	// needs a request_id of its own: the retry then stores nothing new.
	req := &ordersv1.CreateOrderRequest{
		RequestId:    client.NewRequestID(),
		CustomerId:   "alice",
		CurrencyCode: "EUR",
		Items:        []*ordersv1.LineItem{{Sku: "PEN-7", Quantity: 1, UnitPriceMinor: 99}},
	}
	first, err := c.CreateOrder(ctx, req)
	if err != nil {
		log.Fatal(err)
	}
	again, err := c.CreateOrder(ctx, req)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(again.GetOrder().GetOrderId() == first.GetOrder().GetOrderId(), again.GetDuplicate())
	// Output:
	// ORDER_STATUS_CREATED 2500
	// true true
}

// A billing service takes approved orders from the work queue "billing"
// and charges them. Each handler's success acks its event; a failure
// releases it for another try later.
func ExampleClient_Consume() {
	c, err := client.Dial(ordersdAddr, client.WithInsecure())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, stop := context.WithTimeout(context.Background(), 30*time.Second)
	defer stop()

	// An order for this example; the node's review worker approves it.
	placed, err := c.CreateOrder(ctx, &ordersv1.CreateOrderRequest{
		CustomerId:   "bob",
		CurrencyCode: "EUR",
		Items:        []*ordersv1.LineItem{{Sku: "LAMP-3", Quantity: 1, UnitPriceMinor: 4900}},
	})
	if err != nil {
		log.Fatal(err)
	}

	err = c.Consume(ctx, "billing", client.ConsumeOptions{
		Statuses: []ordersv1.OrderStatus{ordersv1.OrderStatus_ORDER_STATUS_APPROVED},
	}, func(ctx context.Context, m *client.Message) error {
		order := m.Event.GetOrder()
		// Charge the customer here, then record it. expected_revision: if
		// the order changed since this event (cancelled), nothing is paid.
		paid, err := c.PayOrder(ctx, &ordersv1.PayOrderRequest{OrderId: order.GetOrderId(), ExpectedRevision: order.GetRevision()})
		switch status.Code(err) {
		case codes.OK:
		case codes.Aborted, codes.FailedPrecondition:
			return nil // it moved on without us: nothing to do
		default:
			return err // try again later
		}
		if order.GetOrderId() == placed.GetOrder().GetOrderId() {
			fmt.Println("charged", paid.GetOrder().GetTotalMinor(), paid.GetOrder().GetStatus())
			stop() // this example is done: Consume settles what runs, then returns
		}
		return nil
	})
	fmt.Println("consume ended:", err)
	// Output:
	// charged 4900 ORDER_STATUS_PAID
	// consume ended: <nil>
}

// A monitor follows one customer's orders as they change. It is told
// when it has caught up with what was stored, and it resumes by itself
// when its node goes away.
func ExampleClient_Watch() {
	c, err := client.Dial(ordersdAddr, client.WithInsecure())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, stop := context.WithTimeout(context.Background(), 30*time.Second)
	defer stop()

	err = c.Watch(ctx, client.WatchOptions{CustomerID: "carol"}, func(ctx context.Context, u client.WatchUpdate) error {
		if u.CaughtUp {
			fmt.Println("caught up; placing an order")
			_, err := c.CreateOrder(ctx, &ordersv1.CreateOrderRequest{
				CustomerId:   "carol",
				CurrencyCode: "EUR",
				Items:        []*ordersv1.LineItem{{Sku: "MUG-1", Quantity: 3, UnitPriceMinor: 800}},
			})
			return err
		}
		// Save u.ResumePosition to resume later with ResumeAfter (see the checkpoint example).
		fmt.Println(u.Event.GetOrder().GetStatus())
		if u.Event.GetOrder().GetStatus() == ordersv1.OrderStatus_ORDER_STATUS_APPROVED {
			return errDone
		}
		return nil
	})
	fmt.Println("watch ended:", errors.Is(err, errDone))
	// Output:
	// caught up; placing an order
	// ORDER_STATUS_CREATED
	// ORDER_STATUS_APPROVED
	// watch ended: true
}

// A monitor saves its checkpoint, the ResumePosition of the last update
// it handled, and a later run goes on after it: on any node, after
// restarts, with nothing missed and nothing handed over twice.
func ExampleClient_Watch_checkpoint() {
	c, err := client.Dial(ordersdAddr, client.WithInsecure())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, stop := context.WithTimeout(context.Background(), 30*time.Second)
	defer stop()

	var checkpoint string // in a real monitor: a file or a database row
	err = c.Watch(ctx, client.WatchOptions{CustomerID: "dave"}, func(ctx context.Context, u client.WatchUpdate) error {
		if u.CaughtUp {
			_, err := c.CreateOrder(ctx, &ordersv1.CreateOrderRequest{
				CustomerId:   "dave",
				CurrencyCode: "EUR",
				Items:        []*ordersv1.LineItem{{Sku: "PEN-7", Quantity: 1, UnitPriceMinor: 300}},
			})
			return err
		}
		fmt.Println("first run:", u.Event.GetOrder().GetStatus())
		checkpoint = u.ResumePosition // saved once the event is handled
		return errDone                // the monitor stops here
	})
	fmt.Println("first run ended:", errors.Is(err, errDone))

	// The review worker approves the order meanwhile. The next run resumes
	// after the checkpoint: the approval, and not the creation again.
	err = c.Watch(ctx, client.WatchOptions{CustomerID: "dave", ResumeAfter: checkpoint}, func(ctx context.Context, u client.WatchUpdate) error {
		if u.Event == nil {
			return nil // caught up
		}
		fmt.Println("second run:", u.Event.GetOrder().GetStatus())
		checkpoint = u.ResumePosition
		return errDone
	})
	fmt.Println("second run ended:", errors.Is(err, errDone))
	// Output:
	// first run: ORDER_STATUS_CREATED
	// first run ended: true
	// second run: ORDER_STATUS_APPROVED
	// second run ended: true
}

// errDone ends the watch of the example.
var errDone = errors.New("done")

// The service config Dial sets by default, for a mesh or a DNS record that
// should carry the same: round-robin (or weighted) balancing over healthy
// nodes, and retries on UNAVAILABLE.
func ExampleServiceConfig() {
	sc, err := client.ServiceConfig(client.RoundRobin)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(sc)
	// Output:
	// {
	//   "healthCheckConfig": {
	//     "serviceName": "orders.v1.OrderService"
	//   },
	//   "loadBalancingConfig": [
	//     {
	//       "round_robin": {}
	//     }
	//   ],
	//   "methodConfig": [
	//     {
	//       "name": [
	//         {
	//           "service": "orders.v1.OrderService"
	//         }
	//       ],
	//       "retryPolicy": {
	//         "backoffMultiplier": 2,
	//         "initialBackoff": "0.1s",
	//         "maxAttempts": 5,
	//         "maxBackoff": "2s",
	//         "retryableStatusCodes": [
	//           "UNAVAILABLE"
	//         ]
	//       }
	//     }
	//   ]
	// }
}
