package eventstore

import (
	"context"
	"errors"
	"testing"
	"time"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// TransitionFrom gives the result Transition would: a new event from the
// known state when the order is still at the known revision, a duplicate
// when the same request already made the change (the order moved on, by
// that very change), a conflict when someone else moved the order on, and
// an immediate refusal of a change the known state forbids or a known
// state that does not match the change.
func TestTransitionFromAKnownRevision(t *testing.T) {
	js, log := startJetStream(t)
	store, err := New(js, Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	create := func(id string) *ordersv1.Order {
		t.Helper()
		res, err := store.Create(ctx, NewOrder{OrderID: id, CustomerID: "c", CurrencyCode: "EUR",
			Items: []*ordersv1.LineItem{{Sku: "s", Quantity: 1, UnitPriceMinor: 7}}})
		if err != nil {
			t.Fatal(err)
		}
		return res.Order
	}
	approve := func(known *ordersv1.Order, requestID string) (Result, error) {
		t.Helper()
		p, err := store.TransitionFrom(ctx, known, Change{OrderID: known.GetOrderId(), RequestID: requestID, To: ordersv1.OrderStatus_ORDER_STATUS_APPROVED})
		if err != nil {
			return Result{}, err
		}
		return p.Wait(ctx)
	}

	a := create("a")
	first, err := approve(a, "r")
	if err != nil || first.Duplicate || first.Order.GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_APPROVED ||
		first.Order.GetRevision() <= a.GetRevision() || first.Order.GetTotalMinor() != 7 {
		t.Fatalf("approve from the created state: %+v, %v", first, err)
	}
	stored, err := store.Get(ctx, "a")
	if err != nil || stored.GetRevision() != first.Order.GetRevision() || stored.GetStatus() != first.Order.GetStatus() {
		t.Fatalf("stored %+v, %v; answered %+v", stored, err, first.Order)
	}
	again, err := approve(a, "r")
	if err != nil || !again.Duplicate || again.Order.GetRevision() != first.Order.GetRevision() {
		t.Fatalf("the same change again from the created state: %+v, %v; want a duplicate of revision %d", again, err, first.Order.GetRevision())
	}
	if _, err := approve(a, "other"); !errors.Is(err, ErrConflict) {
		t.Fatalf("another request from the created state after the approval: %v; want ErrConflict", err)
	}

	b := create("b")
	if _, err := store.Transition(ctx, Change{OrderID: "b", To: ordersv1.OrderStatus_ORDER_STATUS_CANCELLED}); err != nil {
		t.Fatal(err)
	}
	if _, err := approve(b, "r"); !errors.Is(err, ErrConflict) {
		t.Fatalf("approving a cancelled order from its created state: %v; want ErrConflict", err)
	}
	if got, err := store.Get(ctx, "b"); err != nil || got.GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_CANCELLED {
		t.Fatalf("b: %v, %v; want CANCELLED", got.GetStatus(), err)
	}

	if _, err := approve(first.Order, "r2"); !errors.Is(err, ErrIllegalTransition) {
		t.Fatalf("approving an approved order: %v; want ErrIllegalTransition", err)
	}
	if _, err := store.TransitionFrom(ctx, a, Change{OrderID: "b", To: ordersv1.OrderStatus_ORDER_STATUS_APPROVED}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("a known state of another order: %v; want ErrInvalidArgument", err)
	}
	if _, err := store.TransitionFrom(ctx, a, Change{OrderID: "a", ExpectedRevision: a.GetRevision() + 1, To: ordersv1.OrderStatus_ORDER_STATUS_APPROVED}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("an expected revision other than the known one: %v; want ErrInvalidArgument", err)
	}
}
