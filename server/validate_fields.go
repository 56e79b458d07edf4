package server

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
)

// Checks of request fields that several RPCs share.

// Heartbeats of the streaming RPCs (ConsumeOrders, WatchOrders).
const (
	defaultHeartbeat = 15 * time.Second
	minHeartbeat     = time.Second
	maxHeartbeat     = 5 * time.Minute
)

// statuses checks a list of event types: each a storable status, none
// listed twice.
func (v *violations) statuses(field string, statuses []ordersv1.OrderStatus) {
	seen := map[ordersv1.OrderStatus]bool{}
	for i, st := range statuses {
		switch {
		case eventstore.EventType(st) == "":
			v.add(fmt.Sprintf("%s[%d]", field, i), "must be a known order status other than ORDER_STATUS_UNSPECIFIED, got %d", int32(st))
		case seen[st]:
			v.add(fmt.Sprintf("%s[%d]", field, i), "%s is listed twice", st)
		default:
			seen[st] = true
		}
	}
}

// filters returns the subject filters of f, once the fields it comes from
// have passed their checks (so that it cannot fail).
func (v *violations) filters(field string, f eventstore.Filter) []string {
	if len(*v) > 0 {
		return nil
	}
	filters, err := eventstore.FilterSubjects(f)
	if err != nil {
		v.add(field, "%v", err)
	}
	return filters
}

// duration checks an optional duration against bounds; zero when unset.
func (v *violations) duration(field string, d *durationpb.Duration, lo, hi time.Duration) time.Duration {
	if d == nil {
		return 0
	}
	if err := d.CheckValid(); err != nil || d.AsDuration() < lo || d.AsDuration() > hi {
		v.add(field, "must be between %s and %s", lo, hi)
		return 0
	}
	return d.AsDuration()
}

// timestamp checks an optional timestamp; zero when unset.
func (v *violations) timestamp(field string, ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	if err := ts.CheckValid(); err != nil {
		v.add(field, "must be a valid timestamp")
		return time.Time{}
	}
	return ts.AsTime()
}

// heartbeat checks an optional heartbeat interval; the default when unset.
func (v *violations) heartbeat(field string, d *durationpb.Duration) time.Duration {
	if hb := v.duration(field, d, minHeartbeat, maxHeartbeat); hb != 0 {
		return hb
	}
	return defaultHeartbeat
}
