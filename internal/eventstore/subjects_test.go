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
		if _, err := EventSubject(ordersv1.OrderStatus_ORDER_STATUS_CREATED, bad); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("EventSubject(%q) = %v", bad, err)
		}
		if _, err := OrderSubjects(bad); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("OrderSubjects(%q) = %v", bad, err)
		}
	}
}

func TestSubjectsRoundTrip(t *testing.T) {
	t.Parallel()
	for status, token := range eventTokens {
		subject, err := EventSubject(status, "o-1")
		if err != nil || subject != "ORDERS."+token+".o-1" {
			t.Fatalf("EventSubject(%v) = %q, %v", status, subject, err)
		}
		gotStatus, gotID, ok := parseSubject(subject)
		if !ok || gotStatus != status || gotID != "o-1" {
			t.Errorf("parseSubject(%q) = %v %q %v", subject, gotStatus, gotID, ok)
		}
	}
	for _, bad := range []string{"ORDERS", "ORDERS.created", "ORDERS.unknown.o-1", "OTHER.created.o-1", "ORDERS.created.o-1.x"} {
		if _, _, ok := parseSubject(bad); ok {
			t.Errorf("parseSubject(%q) accepted", bad)
		}
	}
	if _, err := EventSubject(ordersv1.OrderStatus_ORDER_STATUS_UNSPECIFIED, "o-1"); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("unspecified status got a subject")
	}
	if _, err := EventSubject(ordersv1.OrderStatus(99), "o-1"); !errors.Is(err, ErrInvalidArgument) {
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
		{"statuses select their event types", Filter{Statuses: []ordersv1.OrderStatus{created, paid}}, []string{"ORDERS.created.*", "ORDERS.paid.*"}},
		{"a status listed twice gives one filter", Filter{Statuses: []ordersv1.OrderStatus{paid, created, paid}}, []string{"ORDERS.paid.*", "ORDERS.created.*"}},
		{"an order id selects its events", Filter{OrderID: "o-1"}, []string{"ORDERS.*.o-1"}},
		{"both select the order's events of those types", Filter{Statuses: []ordersv1.OrderStatus{paid}, OrderID: "o-1"}, []string{"ORDERS.paid.o-1"}},
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
	} {
		if got, err := FilterSubjects(bad); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("FilterSubjects(%+v) = %q, %v; want ErrInvalidArgument", bad, got, err)
		}
	}
}
