package systemtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/testsupport"
)

// seedOrder is an order as the seed article's publisher writes it: JSON,
// published with nats.go straight onto ORDERS.
const seedOrder = `{"id":"s1","customer":"c1","items":[{"sku":"apple","qty":2}],"total":3.5}`

// listenerNode is an ordersd whose embedded NATS server listens on
// loopback, with its gRPC clients and a NATS connection through the
// listener as the given user.
type listenerNode struct {
	orders  ordersv1.OrderServiceClient
	queue   ordersv1.QueueServiceClient
	js      jetstream.JetStream
	nc      *nats.Conn
	metrics string // the address of /metrics
}

// startListenerNode starts ordersd with --nats-listen for user "u"
// (password "pw") and the given flags, and connects to it as that user.
func startListenerNode(t *testing.T, flags ...string) *listenerNode {
	t.Helper()
	addr := freePorts(t, 1)[0]
	ready, _ := runOrdersd(t, t.TempDir(), append([]string{"--review=false", "--nats-listen", addr,
		"--nats-listen-user", "u", "--nats-listen-password", "pw"}, flags...)...)
	conn, err := grpc.NewClient(ready.GRPCAddr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	nc, err := nats.Connect("nats://"+addr, nats.UserInfo("u", "pw"), nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return &listenerNode{orders: ordersv1.NewOrderServiceClient(conn), queue: ordersv1.NewQueueServiceClient(conn),
		js: js, nc: nc, metrics: ready.MetricsAddr.String()}
}

// A user of the listener with publish rights (--nats-listen-access=full)
// can put the seed article's JSON order on ORDERS. Outside the layout's
// subjects JetStream refuses it ("no stream"); on each event subject of a
// real order it is stored, and then: every other order of that customer
// reads, lists and changes as before; that order's reads say which
// sequence is wrong and why, and ListOrders reports it instead of failing;
// RepairOrder shows the message and restores the order, whose reads and
// transitions work again.
func TestForeignMessagesThroughTheListener(t *testing.T) {
	n := startListenerNode(t, "--nats-listen-access", "full")
	ctx := testsupport.Context(t, 2*time.Minute)

	t.Run("outside the layout: refused", func(t *testing.T) {
		for _, subject := range []string{"ORDERS.created", "ORDERS.junk", "ORDERS.created.c1", "ORDERS.created.c1.s1.x", "ORDERS.bogus.c1.s1", "ORDER_IDS.a.b"} {
			_, err := n.js.Publish(ctx, subject, []byte(seedOrder))
			if !errors.Is(err, jetstream.ErrNoStreamResponse) {
				t.Errorf("publish on %s: %v, want JetStream's no-stream answer", subject, err)
			}
		}
	})

	for _, event := range []string{"created", "approved", "rejected", "paid", "shipped", "cancelled"} {
		t.Run("on ORDERS."+event+" of a real order", func(t *testing.T) {
			customer := "c-" + event
			// Others of the same customer, in several states, before and after the victim.
			before := createOrder(ctx, t, n.orders, customer)
			victim := createOrder(ctx, t, n.orders, customer)
			approve(ctx, t, n.orders, victim.GetOrderId())
			after := createOrder(ctx, t, n.orders, customer)
			paid := approve(ctx, t, n.orders, after.GetOrderId())
			if _, err := n.orders.PayOrder(ctx, &ordersv1.PayOrderRequest{OrderId: paid.GetOrderId()}); err != nil {
				t.Fatal(err)
			}
			subject := fmt.Sprintf("ORDERS.%s.%s.%s", event, customer, victim.GetOrderId())
			ack, err := n.js.Publish(ctx, subject, []byte(seedOrder))
			if err != nil {
				t.Fatalf("publish on %s: %v", subject, err)
			}
			foreign := ack.Sequence

			// The other orders read, list and change as before.
			for _, o := range []*ordersv1.Order{before, after} {
				if _, err := n.orders.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: o.GetOrderId()}); err != nil {
					t.Fatalf("GetOrder of another order: %v", err)
				}
			}
			checkListing(ctx, t, n.orders, customer, []string{before.GetOrderId(), after.GetOrderId()}, foreign)

			// The victim's reads name the sequence and why.
			_, err = n.orders.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: victim.GetOrderId()})
			checkUnreadable(t, "GetOrder", err, victim.GetOrderId(), foreign)
			_, err = readHistory(ctx, n.orders, victim.GetOrderId())
			checkUnreadable(t, "GetOrderHistory", err, victim.GetOrderId(), foreign)
			_, err = n.orders.CancelOrder(ctx, &ordersv1.CancelOrderRequest{OrderId: victim.GetOrderId()})
			checkUnreadable(t, "CancelOrder", err, victim.GetOrderId(), foreign)

			// RepairOrder shows the message, then restores the last good state.
			look, err := n.queue.RepairOrder(ctx, &ordersv1.RepairOrderRequest{OrderId: victim.GetOrderId(), ValidateOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			if look.GetRepaired() || len(look.GetUnreadableEvents()) != 1 || look.GetUnreadableEvents()[0].GetSequence() != foreign ||
				look.GetUnreadableEvents()[0].GetSubject() != subject || look.GetOrder().GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_APPROVED {
				t.Fatalf("RepairOrder validate_only = %v", look)
			}
			if _, err := n.orders.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: victim.GetOrderId()}); status.Code(err) != codes.DataLoss {
				t.Fatalf("validate_only changed the order: GetOrder = %v", err)
			}
			fixed, err := n.queue.RepairOrder(ctx, &ordersv1.RepairOrderRequest{OrderId: victim.GetOrderId()})
			if err != nil {
				t.Fatal(err)
			}
			if !fixed.GetRepaired() || fixed.GetOrder().GetRevision() <= foreign || fixed.GetOrder().GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_APPROVED {
				t.Fatalf("RepairOrder = %v", fixed)
			}
			again, err := n.queue.RepairOrder(ctx, &ordersv1.RepairOrderRequest{OrderId: victim.GetOrderId()})
			if err != nil || again.GetRepaired() {
				t.Fatalf("a second RepairOrder = %v, %v; want nothing to repair", again, err)
			}

			got, err := n.orders.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: victim.GetOrderId()})
			if err != nil || got.GetOrder().GetRevision() != fixed.GetOrder().GetRevision() {
				t.Fatalf("GetOrder after the repair: %v, %v", got, err)
			}
			history, err := readHistory(ctx, n.orders, victim.GetOrderId())
			if err != nil {
				t.Fatalf("GetOrderHistory after the repair: %v", err)
			}
			if len(history) != 4 || history[0].GetEvent() == nil || history[1].GetEvent() == nil ||
				history[2].GetSkipped().GetSequence() != foreign || history[3].GetEvent().GetSequence() != fixed.GetOrder().GetRevision() {
				t.Fatalf("history after the repair: %v; want created, approved, the skipped message, the repair", history)
			}
			checkListing(ctx, t, n.orders, customer, []string{before.GetOrderId(), victim.GetOrderId(), after.GetOrderId()}, 0)

			// Its transitions work again.
			payRes, err := n.orders.PayOrder(ctx, &ordersv1.PayOrderRequest{OrderId: victim.GetOrderId(), ExpectedRevision: fixed.GetOrder().GetRevision()})
			if err != nil {
				t.Fatalf("PayOrder after the repair: %v", err)
			}
			if _, err := n.orders.ShipOrder(ctx, &ordersv1.ShipOrderRequest{OrderId: victim.GetOrderId(), ExpectedRevision: payRes.GetOrder().GetRevision()}); err != nil {
				t.Fatalf("ShipOrder after the repair: %v", err)
			}
		})
	}

	t.Run("counted once", func(t *testing.T) {
		// Six foreign messages, each read many times above.
		if got := metricValue(t, n.metrics, `ordersd_unreadable_events_total{stream="ORDERS"}`); got != "6" {
			t.Fatalf("ordersd_unreadable_events_total = %s, want 6", got)
		}
	})
}

// checkListing lists customer's orders, without a status and by each
// status, one order a page, and checks that exactly want are listed (in
// that order when unfiltered), each once, and that the message at
// unreadable (0: none) is reported on a page instead of failing it.
func checkListing(ctx context.Context, t *testing.T, client ordersv1.OrderServiceClient, customer string, want []string, unreadable uint64) {
	t.Helper()
	for _, statuses := range [][]ordersv1.OrderStatus{nil, {ordersv1.OrderStatus_ORDER_STATUS_APPROVED,
		ordersv1.OrderStatus_ORDER_STATUS_CREATED, ordersv1.OrderStatus_ORDER_STATUS_PAID, ordersv1.OrderStatus_ORDER_STATUS_SHIPPED}} {
		for _, byCustomer := range []bool{true, false} {
			req := &ordersv1.ListOrdersRequest{Statuses: statuses, PageSize: 1}
			if byCustomer {
				req.CustomerId = customer
			}
			var listed []string
			reported := false
			for {
				res, err := client.ListOrders(ctx, req)
				if err != nil {
					t.Fatalf("ListOrders %v: %v", req, err)
				}
				for _, o := range res.GetOrders() {
					if o.GetCustomerId() == customer {
						listed = append(listed, o.GetOrderId())
					}
				}
				for _, u := range res.GetUnreadableOrders() {
					if u.GetSequence() == unreadable && u.GetCustomerId() == customer && u.GetReason() != "" {
						reported = true
					} else if u.GetCustomerId() == customer {
						t.Errorf("ListOrders %v reports %v", req, u)
					}
				}
				if req.PageToken = res.GetNextPageToken(); req.PageToken == "" {
					break
				}
			}
			wantListed := want
			if statuses != nil {
				slices.Sort(listed)
				wantListed = slices.Sorted(slices.Values(want))
			}
			if !slices.Equal(listed, wantListed) {
				t.Errorf("ListOrders (customer %v, statuses %v) listed %v, want %v", byCustomer, statuses, listed, wantListed)
			}
			if reported != (unreadable != 0) {
				t.Errorf("ListOrders (customer %v, statuses %v) reported the unreadable message: %v, want %v", byCustomer, statuses, reported, unreadable != 0)
			}
		}
	}
}

// checkUnreadable checks that err is DATA_LOSS naming the order, the
// sequence and that it is not an order event.
func checkUnreadable(t *testing.T, call string, err error, orderID string, seq uint64) {
	t.Helper()
	msg := status.Convert(err).Message()
	if status.Code(err) != codes.DataLoss || !strings.Contains(msg, fmt.Sprintf("order %q", orderID)) ||
		!strings.Contains(msg, fmt.Sprintf("sequence %d ", seq)) || !strings.Contains(msg, "not an order event") ||
		!strings.Contains(msg, "RepairOrder") {
		t.Errorf("%s: %v; want DATA_LOSS naming order %s and sequence %d", call, err, orderID, seq)
	}
}

func createOrder(ctx context.Context, t *testing.T, client ordersv1.OrderServiceClient, customer string) *ordersv1.Order {
	t.Helper()
	res, err := client.CreateOrder(ctx, &ordersv1.CreateOrderRequest{CustomerId: customer, CurrencyCode: "EUR",
		Items: []*ordersv1.LineItem{{Sku: "apple", Quantity: 2, UnitPriceMinor: 175}}})
	if err != nil {
		t.Fatal(err)
	}
	return res.GetOrder()
}

func approve(ctx context.Context, t *testing.T, client ordersv1.OrderServiceClient, orderID string) *ordersv1.Order {
	t.Helper()
	res, err := client.ApproveOrder(ctx, &ordersv1.ApproveOrderRequest{OrderId: orderID})
	if err != nil {
		t.Fatal(err)
	}
	return res.GetOrder()
}

func readHistory(ctx context.Context, client ordersv1.OrderServiceClient, orderID string) ([]*ordersv1.GetOrderHistoryResponse, error) {
	stream, err := client.GetOrderHistory(ctx, &ordersv1.GetOrderHistoryRequest{OrderId: orderID})
	if err != nil {
		return nil, err
	}
	var all []*ordersv1.GetOrderHistoryResponse
	for {
		res, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return all, nil
		}
		if err != nil {
			return all, err
		}
		all = append(all, res)
	}
}

// metricValue is the value of one series on /metrics at addr ("" when absent).
func metricValue(t *testing.T, addr, series string) string {
	t.Helper()
	res, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return ""
}

// The listener's user reads by default: publishing on ORDERS.> or
// ORDER_IDS.> is a permission violation, and so are purging and deleting
// (streams, messages, consumers); yet it reads the streams with nats.go as
// the seed article's monitor does (a push subscription on ORDERS.>, an
// ordered consumer) and as the nats CLI does (stream info, get).
func TestListenerUserReadsOnly(t *testing.T) {
	n := startListenerNode(t)
	ctx := testsupport.Context(t, time.Minute)
	order := createOrder(ctx, t, n.orders, "c1")

	violations := make(chan error, 16)
	nc, err := nats.Connect(n.nc.ConnectedUrl(), nats.UserInfo("u", "pw"), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		violations <- err
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, "ORDERS") // nats stream info ORDERS
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	if !slices.Equal(stream.CachedInfo().Config.Subjects, []string{"ORDERS.created.*.*", "ORDERS.approved.*.*",
		"ORDERS.rejected.*.*", "ORDERS.paid.*.*", "ORDERS.shipped.*.*", "ORDERS.cancelled.*.*"}) {
		t.Errorf("stream ORDERS captures %v", stream.CachedInfo().Config.Subjects)
	}

	// Writes and removals are refused: each raises a permission violation
	// naming its subject (a JetStream request then gets no answer at all).
	violated := func(what, subject string, call func(ctx context.Context) error) {
		t.Helper()
		callCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if err := call(callCtx); err == nil {
			t.Errorf("%s: done, want a permission violation", what)
			return
		}
		// Others may come first: an ordered consumer that ends tries to
		// delete its consumer, which a reader may not either.
		deadline := time.After(5 * time.Second)
		for {
			select {
			case err := <-violations:
				if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), `"`+subject+`"`) {
					return
				}
			case <-deadline:
				t.Errorf("%s raised no permission violation on %s", what, subject)
				return
			}
		}
	}
	for _, subject := range []string{"ORDERS.created.c1." + order.GetOrderId(), "ORDERS.approved.c1." + order.GetOrderId(), "ORDER_IDS.x1"} {
		violated("publish on "+subject, subject, func(ctx context.Context) error {
			_, err := js.Publish(ctx, subject, []byte(seedOrder))
			return err
		})
	}
	violated("a plain publish", "ORDERS.created.c1.x", func(context.Context) error {
		if err := nc.Publish("ORDERS.created.c1.x", []byte(seedOrder)); err != nil {
			return err
		}
		_ = nc.Flush()
		return errors.New("a plain publish has no answer; the violation comes asynchronously")
	})
	violated("purge", "$JS.API.STREAM.PURGE.ORDERS", func(ctx context.Context) error { return stream.Purge(ctx) })
	violated("delete the stream", "$JS.API.STREAM.DELETE.ORDERS", func(ctx context.Context) error { return js.DeleteStream(ctx, "ORDERS") })
	violated("delete a message", "$JS.API.STREAM.MSG.DELETE.ORDERS", func(ctx context.Context) error { return stream.DeleteMsg(ctx, order.GetRevision()) })
	violated("update the stream", "$JS.API.STREAM.UPDATE.ORDERS", func(ctx context.Context) error {
		cfg := stream.CachedInfo().Config
		cfg.Subjects = []string{"ORDERS.>"}
		_, err := js.UpdateStream(ctx, cfg)
		return err
	})
	violated("create a stream", "$JS.API.STREAM.CREATE.SQUAT", func(ctx context.Context) error {
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "SQUAT", Subjects: []string{"ORDERS.junk"}})
		return err
	})
	if info, err := stream.Info(ctx); err != nil || info.State.Msgs != 1 {
		t.Fatalf("stream after the refused writes: %v, %v; want the one created event", info, err)
	}

	// Reads work: get by sequence and by subject (nats stream get) ...
	if msg, err := stream.GetMsg(ctx, order.GetRevision()); err != nil || msg.Subject != "ORDERS.created.c1."+order.GetOrderId() {
		t.Fatalf("stream get: %v, %v", msg, err)
	}
	if _, err := stream.GetLastMsgForSubject(ctx, "ORDERS.*.c1."+order.GetOrderId()); err != nil {
		t.Fatalf("stream get by subject: %v", err)
	}
	// ... the seed monitor's push subscription, acked as it goes ...
	legacy, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	seen := make(chan string, 16)
	sub, err := legacy.Subscribe("ORDERS.>", func(m *nats.Msg) { seen <- m.Subject; _ = m.Ack() }, nats.DeliverAll())
	if err != nil {
		t.Fatalf("js.Subscribe(ORDERS.>): %v", err)
	}
	defer sub.Unsubscribe()
	ordered, err := legacy.Subscribe("ORDERS.>", func(m *nats.Msg) { seen <- "ordered " + m.Subject }, nats.OrderedConsumer(), nats.DeliverAll())
	if err != nil {
		t.Fatalf("ordered js.Subscribe(ORDERS.>): %v", err)
	}
	defer ordered.Unsubscribe()
	// ... and the jetstream package's ordered (pull) consumer.
	cons, err := js.OrderedConsumer(ctx, "ORDERS", jetstream.OrderedConsumerConfig{FilterSubjects: []string{"ORDERS.>"}})
	if err != nil {
		t.Fatalf("ordered consumer: %v", err)
	}
	next, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil || next.Subject() != "ORDERS.created.c1."+order.GetOrderId() {
		t.Fatalf("ordered consumer Next: %v, %v", next, err)
	}
	later := approve(ctx, t, n.orders, order.GetOrderId())
	want := map[string]bool{
		"ORDERS.created.c1." + order.GetOrderId(): true, "ORDERS.approved.c1." + later.GetOrderId(): true,
		"ordered ORDERS.created.c1." + order.GetOrderId(): true, "ordered ORDERS.approved.c1." + later.GetOrderId(): true,
	}
	for len(want) > 0 {
		select {
		case s := <-seen:
			delete(want, s)
		case <-ctx.Done():
			t.Fatalf("the subscriptions did not see %v", want)
		}
	}
	// The push consumer's acks were taken: nothing waits for redelivery.
	var info *nats.ConsumerInfo
	for {
		info, err = sub.ConsumerInfo()
		if err == nil && info.NumAckPending == 0 && info.AckFloor.Stream == later.GetRevision() {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the monitor's consumer after acks: %+v, %v", info, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Consumers it made are its own to read, not to delete.
	violated("delete a consumer", "$JS.API.CONSUMER.DELETE.ORDERS."+info.Name, func(ctx context.Context) error {
		return js.DeleteConsumer(ctx, "ORDERS", info.Name)
	})
}
