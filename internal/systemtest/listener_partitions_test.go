package systemtest

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ordersd/ordersd/internal/eventstore"
	"github.com/ordersd/ordersd/internal/testsupport"
)

// On three partitions the listener's reader reads as docs/subject-layout.md
// says: a core subscription on ORDERS.> sees an order's event, a JetStream
// subscription on ORDERS.> finds no one stream, one on the order's
// partition (ORDERS.<k>.>) replays it, and a publish on a partition's
// subject is a permission violation.
func TestListenerReaderOnPartitions(t *testing.T) {
	n := startListenerNode(t, "--partitions", "3")
	ctx := testsupport.Context(t, time.Minute)
	violations := make(chan error, 16)
	nc, err := nats.Connect(n.nc.ConnectedUrl(), nats.UserInfo("u", "pw"), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		violations <- err
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	core := make(chan string, 16)
	if _, err := nc.Subscribe("ORDERS.>", func(m *nats.Msg) { core <- m.Subject }); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	order := createOrder(ctx, t, n.orders, "c1")
	p := eventstore.Layout{Partitions: 3}.Of(order.GetOrderId())
	want, err := p.EventSubject(order.GetStatus(), eventstore.KeyOf(order))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-core:
		if got != want {
			t.Errorf("core subscription on ORDERS.> saw %s, want %s", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("core subscription on ORDERS.> saw nothing of %s", want)
	}

	legacy, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := legacy.Subscribe("ORDERS.>", func(*nats.Msg) {}, nats.DeliverAll()); !errors.Is(err, nats.ErrNoMatchingStream) {
		t.Errorf("js.Subscribe(ORDERS.>) on three partitions: %v, want %v", err, nats.ErrNoMatchingStream)
	}
	replayed := make(chan string, 16)
	sub, err := legacy.Subscribe(p.Subjects(), func(m *nats.Msg) { replayed <- m.Subject }, nats.DeliverAll(), nats.OrderedConsumer())
	if err != nil {
		t.Fatalf("js.Subscribe(%s): %v", p.Subjects(), err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	select {
	case got := <-replayed:
		if got != want {
			t.Errorf("js.Subscribe(%s) replayed %s, want %s", p.Subjects(), got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("js.Subscribe(%s) replayed nothing", p.Subjects())
	}

	if err := nc.Publish(want, []byte(seedOrder)); err != nil {
		t.Fatal(err)
	}
	_ = nc.Flush()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case err := <-violations:
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), `"`+want+`"`) {
				return
			}
		case <-deadline:
			t.Fatalf("a publish on %s raised no permission violation", want)
		}
	}
}
