package eventstore

import (
	"fmt"
	"slices"
	"strings"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// StreamName is the JetStream stream holding every order event.
const StreamName = "ORDERS"

// StreamSubjects is the subject filter of the stream: every subject under ORDERS.
const StreamSubjects = StreamName + ".>"

// Bounds on values that enter subjects and headers.
const (
	MaxIDLen        = 64  // order, customer and consumer ids
	MaxRequestIDLen = 128 // request ids (AIP-155)
)

// eventTokens maps each storable status to the <event> token of its subject.
var eventTokens = map[ordersv1.OrderStatus]string{
	ordersv1.OrderStatus_ORDER_STATUS_CREATED:   "created",
	ordersv1.OrderStatus_ORDER_STATUS_APPROVED:  "approved",
	ordersv1.OrderStatus_ORDER_STATUS_REJECTED:  "rejected",
	ordersv1.OrderStatus_ORDER_STATUS_PAID:      "paid",
	ordersv1.OrderStatus_ORDER_STATUS_SHIPPED:   "shipped",
	ordersv1.OrderStatus_ORDER_STATUS_CANCELLED: "cancelled",
}

// EventType returns the <event> subject token for status, or "" when status
// is not a storable status (unspecified or unknown).
func EventType(status ordersv1.OrderStatus) string {
	return eventTokens[status]
}

// ValidToken reports whether s is 1 to maxLen characters drawn only from
// letters, digits, '-' and '_'. It is the allow-list for every client value
// that enters a subject or a header: '.', '*', '>', spaces, control
// characters and non-ASCII runes can never pass.
func ValidToken(s string, maxLen int) bool {
	if len(s) == 0 || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

// EventSubject is the subject an event of the given status is published on:
// ORDERS.<event>.<order_id>.
func EventSubject(status ordersv1.OrderStatus, orderID string) (string, error) {
	token := EventType(status)
	if token == "" {
		return "", fmt.Errorf("%w: status %v has no event subject", ErrInvalidArgument, status)
	}
	if !ValidToken(orderID, MaxIDLen) {
		return "", fmt.Errorf("%w: order id %q is not subject-safe", ErrInvalidArgument, orderID)
	}
	return StreamName + "." + token + "." + orderID, nil
}

// OrderSubjects is the filter matching every event of one order:
// ORDERS.*.<order_id>.
func OrderSubjects(orderID string) (string, error) {
	if !ValidToken(orderID, MaxIDLen) {
		return "", fmt.Errorf("%w: order id %q is not subject-safe", ErrInvalidArgument, orderID)
	}
	return StreamName + ".*." + orderID, nil
}

// StatusSubjects is the filter matching every event of one type:
// ORDERS.<event>.*.
func StatusSubjects(status ordersv1.OrderStatus) (string, error) {
	token := EventType(status)
	if token == "" {
		return "", fmt.Errorf("%w: status %v has no event subject", ErrInvalidArgument, status)
	}
	return StreamName + "." + token + ".*", nil
}

// parseSubject splits ORDERS.<event>.<order_id> into its status and order id.
func parseSubject(subject string) (ordersv1.OrderStatus, string, bool) {
	parts := strings.Split(subject, ".")
	if len(parts) != 3 || parts[0] != StreamName || !ValidToken(parts[2], MaxIDLen) {
		return ordersv1.OrderStatus_ORDER_STATUS_UNSPECIFIED, "", false
	}
	for status, token := range eventTokens {
		if token == parts[1] {
			return status, parts[2], true
		}
	}
	return ordersv1.OrderStatus_ORDER_STATUS_UNSPECIFIED, "", false
}

// Filter says which events a reader wants, by what their subjects carry.
// It is the one place where what a client asks for becomes subject
// filters: work queues, watches and reads all go through FilterSubjects.
// (A customer filter belongs here too, once the customer id is a token of
// the subject; until then it is applied to the payload by the reader.)
type Filter struct {
	// Statuses selects events of these types; every type when empty.
	Statuses []ordersv1.OrderStatus
	// OrderID selects one order's events; every order's when empty.
	OrderID string
}

// FilterSubjects returns the subject filters that select exactly f's
// events: ORDERS.<event>.* per status, ORDERS.*.<order_id> for an order,
// ORDERS.<event>.<order_id> per status for both, and none (every event)
// for an empty f. A status listed twice gives one filter, as JetStream
// refuses overlapping filters. An unknown status or an order id that is not
// subject-safe is ErrInvalidArgument.
func FilterSubjects(f Filter) ([]string, error) {
	if len(f.Statuses) == 0 {
		if f.OrderID == "" {
			return nil, nil
		}
		subject, err := OrderSubjects(f.OrderID)
		if err != nil {
			return nil, err
		}
		return []string{subject}, nil
	}
	filters := make([]string, 0, len(f.Statuses))
	for _, st := range f.Statuses {
		var (
			subject string
			err     error
		)
		if f.OrderID == "" {
			subject, err = StatusSubjects(st)
		} else {
			subject, err = EventSubject(st, f.OrderID)
		}
		if err != nil {
			return nil, err
		}
		if !slices.Contains(filters, subject) {
			filters = append(filters, subject)
		}
	}
	return filters, nil
}
