package client_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/ordersd/ordersd/client"
	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/testsupport"
)

// dialExamplesNode connects to the node TestMain started.
func dialExamplesNode(t *testing.T) *client.Client {
	t.Helper()
	c, err := client.Dial(ordersdAddr, client.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// createFor creates an order of customer and returns it.
func createFor(t *testing.T, c *client.Client, customer string) *ordersv1.Order {
	t.Helper()
	res, err := c.CreateOrder(testsupport.Context(t, 10*time.Second), &ordersv1.CreateOrderRequest{
		CustomerId: customer, CurrencyCode: "EUR",
		Items: []*ordersv1.LineItem{{Sku: "SKU-1", Quantity: 1, UnitPriceMinor: 100}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return res.GetOrder()
}

// deliveries records what a Consume handler was given.
type deliveries struct {
	mu   sync.Mutex // protects byID
	byID map[string][]*client.Message
	at   map[string][]time.Time
}

func newDeliveries() *deliveries {
	return &deliveries{byID: map[string][]*client.Message{}, at: map[string][]time.Time{}}
}

func (d *deliveries) add(m *client.Message) {
	d.mu.Lock()
	defer d.mu.Unlock()
	id := m.Event.GetOrder().GetOrderId()
	d.byID[id] = append(d.byID[id], m)
	d.at[id] = append(d.at[id], time.Now())
}

func (d *deliveries) of(id string) ([]*client.Message, []time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]*client.Message(nil), d.byID[id]...), append([]time.Time(nil), d.at[id]...)
}

// waitFor polls cond until it holds, failing the test after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// consumeInBackground runs Consume until the test ends or stop is called,
// and returns stop, which waits for Consume to return and gives its error.
func consumeInBackground(t *testing.T, c *client.Client, consumer string, opts client.ConsumeOptions, h client.Handler) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(testsupport.Context(t, 2*time.Minute))
	done := make(chan error, 1)
	go func() { done <- c.Consume(ctx, consumer, opts, h) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() { cancel(); err = <-done })
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}
