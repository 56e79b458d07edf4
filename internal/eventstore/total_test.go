package eventstore

import (
	"errors"
	"math"
	"testing"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

func TestOrderTotalRefusesOverflow(t *testing.T) {
	t.Parallel()
	item := func(q, p int64) *ordersv1.LineItem { return &ordersv1.LineItem{Quantity: q, UnitPriceMinor: p} }
	if total, err := orderTotal([]*ordersv1.LineItem{item(2, 1250), item(1, 99)}); err != nil || total != 2599 {
		t.Errorf("total = %d, %v", total, err)
	}
	for name, items := range map[string][]*ordersv1.LineItem{
		"product overflow": {item(math.MaxInt64, 2)},
		"sum overflow":     {item(1, math.MaxInt64), item(1, 1)},
		"negative":         {item(-1, 5)},
	} {
		if _, err := orderTotal(items); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
