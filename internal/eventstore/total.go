package eventstore

import (
	"fmt"
	"math/bits"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// orderTotal sums quantity * unit price over items, refusing negative
// values and any overflow of int64 (callers bound both, so this only
// guards against a caller that did not).
func orderTotal(items []*ordersv1.LineItem) (int64, error) {
	var total uint64
	for i, it := range items {
		q, p := it.GetQuantity(), it.GetUnitPriceMinor()
		if q < 0 || p < 0 {
			return 0, fmt.Errorf("%w: item %d has a negative quantity or price", ErrInvalidArgument, i)
		}
		hi, line := bits.Mul64(uint64(q), uint64(p))
		sum, carry := bits.Add64(total, line, 0)
		if hi != 0 || carry != 0 || sum > 1<<63-1 {
			return 0, fmt.Errorf("%w: order total overflows at item %d", ErrInvalidArgument, i)
		}
		total = sum
	}
	return int64(total), nil
}
