package eventstore

import (
	"errors"
	"slices"
	"strings"
	"testing"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

func TestValidTokenKeepsSubjectsSafe(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"a", "order-1001", "A_b-9", strings.Repeat("x", MaxIDLen)} {
		if !ValidToken(ok, MaxIDLen) {
			t.Errorf("%q refused", ok)
		}
	}
	for _, bad := range []string{"", "a.b", "*", ">", "a b", "a\tb", "é", "a\x00", "a/b", strings.Repeat("x", MaxIDLen+1)} {
		if ValidToken(bad, MaxIDLen) {
			t.Errorf("%q accepted", bad)
		}
		for _, k := range []OrderKey{{CustomerID: "c-1", OrderID: bad}, {CustomerID: bad, OrderID: "o-1"}} {
			if _, err := EventSubject(ordersv1.OrderStatus_ORDER_STATUS_CREATED, k); !errors.Is(err, ErrInvalidArgument) {
				t.Errorf("EventSubject(%+v) = %v", k, err)
			}
			if _, err := OrderSubjects(k); !errors.Is(err, ErrInvalidArgument) {
				t.Errorf("OrderSubjects(%+v) = %v", k, err)
			}
		}
	}
}

func TestSubjectsRoundTrip(t *testing.T) {
	t.Parallel()
	key := OrderKey{CustomerID: "c-1", OrderID: "o-1"}
	for status, token := range eventTokens {
		subject, err := EventSubject(status, key)
		if err != nil || subject != "ORDERS."+token+".c-1.o-1" {
			t.Fatalf("EventSubject(%v) = %q, %v", status, subject, err)
		}
		gotStatus, gotKey, ok := Partition{}.parseSubject(subject)
		if !ok || gotStatus != status || gotKey != key {
			t.Errorf("parseSubject(%q) = %v %+v %v", subject, gotStatus, gotKey, ok)
		}
	}
	// The layout before customer tokens, and everything else, is refused.
	for _, bad := range []string{"ORDERS", "ORDERS.created", "ORDERS.created.o-1", "ORDERS.unknown.c-1.o-1", "OTHER.created.c-1.o-1", "ORDERS.created.c-1.o-1.x", "ORDERS.created.*.o-1"} {
		if _, _, ok := (Partition{}).parseSubject(bad); ok {
			t.Errorf("parseSubject(%q) accepted", bad)
		}
	}
	if _, err := EventSubject(ordersv1.OrderStatus_ORDER_STATUS_UNSPECIFIED, key); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("unspecified status got a subject")
	}
	if _, err := EventSubject(ordersv1.OrderStatus(99), key); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("unknown status got a subject")
	}
}

// FilterSubjects turns statuses and an order id into the subject filters
// that select exactly their events, and refuses what cannot be a subject.
func TestFilterSubjects(t *testing.T) {
	t.Parallel()
	created, paid := ordersv1.OrderStatus_ORDER_STATUS_CREATED, ordersv1.OrderStatus_ORDER_STATUS_PAID
	for _, c := range []struct {
		name string
		f    Filter
		want []string
	}{
		{"nothing asked for is every event", Filter{}, nil},
		{"statuses select their event types", Filter{Statuses: []ordersv1.OrderStatus{created, paid}}, []string{"ORDERS.created.*.*", "ORDERS.paid.*.*"}},
		{"a status listed twice gives one filter", Filter{Statuses: []ordersv1.OrderStatus{paid, created, paid}}, []string{"ORDERS.paid.*.*", "ORDERS.created.*.*"}},
		{"a customer id selects the customer's events", Filter{CustomerID: "c-1"}, []string{"ORDERS.*.c-1.*"}},
		{"an order id selects its events", Filter{OrderID: "o-1"}, []string{"ORDERS.*.*.o-1"}},
		{"an order of a customer", Filter{CustomerID: "c-1", OrderID: "o-1"}, []string{"ORDERS.*.c-1.o-1"}},
		{"statuses of a customer", Filter{Statuses: []ordersv1.OrderStatus{paid}, CustomerID: "c-1"}, []string{"ORDERS.paid.c-1.*"}},
		{"all three", Filter{Statuses: []ordersv1.OrderStatus{paid}, CustomerID: "c-1", OrderID: "o-1"}, []string{"ORDERS.paid.c-1.o-1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got, err := FilterSubjects(c.f)
			if err != nil || !slices.Equal(got, c.want) {
				t.Fatalf("FilterSubjects(%+v) = %q, %v; want %q", c.f, got, err, c.want)
			}
		})
	}
	for _, bad := range []Filter{
		{Statuses: []ordersv1.OrderStatus{ordersv1.OrderStatus_ORDER_STATUS_UNSPECIFIED}},
		{Statuses: []ordersv1.OrderStatus{99}},
		{OrderID: "a.b"},
		{OrderID: ">", Statuses: []ordersv1.OrderStatus{created}},
		{CustomerID: "*"},
		{CustomerID: "c.1", Statuses: []ordersv1.OrderStatus{created}},
	} {
		if got, err := FilterSubjects(bad); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("FilterSubjects(%+v) = %q, %v; want ErrInvalidArgument", bad, got, err)
		}
	}
}
