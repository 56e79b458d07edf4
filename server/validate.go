package server

import (
	"fmt"
	"unicode"
	"unicode/utf8"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
)

// Bounds on request values. Together they keep total_minor far from int64
// overflow: 100 * 10,000 * 10^12 = 10^18 < 9.2 * 10^18.
const (
	maxItems         = 100
	maxSKULen        = 64
	maxQuantity      = 10_000
	maxUnitPrice     = 1_000_000_000_000
	maxReasonLen     = 512
	currencyCodeSize = 3
)

// violations collects what is wrong with a request, so one answer lists
// every bad field (google.rpc.BadRequest).
type violations []*errdetails.BadRequest_FieldViolation

func (v *violations) add(field, format string, args ...any) {
	*v = append(*v, &errdetails.BadRequest_FieldViolation{Field: field, Description: fmt.Sprintf(format, args...)})
}

// err is nil when nothing was added, else INVALID_ARGUMENT with the
// violations attached.
func (v violations) err() error {
	if len(v) == 0 {
		return nil
	}
	msg := "invalid " + v[0].GetField() + ": " + v[0].GetDescription()
	if len(v) > 1 {
		msg += fmt.Sprintf(" (and %d more)", len(v)-1)
	}
	return invalidArgument(msg, v)
}

// invalidArgument builds an INVALID_ARGUMENT status carrying field violations.
func invalidArgument(msg string, v []*errdetails.BadRequest_FieldViolation) error {
	st := status.New(codes.InvalidArgument, msg)
	if withDetails, err := st.WithDetails(&errdetails.BadRequest{FieldViolations: v}); err == nil {
		st = withDetails
	}
	return st.Err()
}

// id checks a required or optional subject-safe id.
func (v *violations) id(field, value string, maxLen int, required bool) {
	switch {
	case value == "" && required:
		v.add(field, "is required")
	case value != "" && !eventstore.ValidToken(value, maxLen):
		v.add(field, "must be 1 to %d characters, each a letter, digit, '-' or '_'", maxLen)
	}
}

// text checks free text: valid UTF-8, no control characters, bounded.
func (v *violations) text(field, value string, maxLen int, required bool) {
	switch {
	case value == "" && required:
		v.add(field, "is required")
	case utf8.RuneCountInString(value) > maxLen:
		v.add(field, "must be at most %d characters", maxLen)
	case !utf8.ValidString(value):
		v.add(field, "must be valid UTF-8")
	case hasControl(value):
		v.add(field, "must not contain control characters")
	}
}

func hasControl(s string) bool {
	for _, r := range s {
		if unicode.IsControl(r) {
			return true
		}
	}
	return false
}

func validateCreate(req *ordersv1.CreateOrderRequest) error {
	var v violations
	v.id("request_id", req.GetRequestId(), eventstore.MaxRequestIDLen, false)
	v.id("order_id", req.GetOrderId(), eventstore.MaxIDLen, false)
	v.id("customer_id", req.GetCustomerId(), eventstore.MaxIDLen, true)
	if !isCurrencyCode(req.GetCurrencyCode()) {
		v.add("currency_code", "must be an ISO 4217 code: three upper-case letters, like EUR")
	}
	switch n := len(req.GetItems()); {
	case n == 0:
		v.add("items", "at least one item is required")
	case n > maxItems:
		v.add("items", "at most %d items are allowed, got %d", maxItems, n)
	default:
		for i, it := range req.GetItems() {
			field := fmt.Sprintf("items[%d]", i)
			v.text(field+".sku", it.GetSku(), maxSKULen, true)
			if q := it.GetQuantity(); q < 1 || q > maxQuantity {
				v.add(field+".quantity", "must be between 1 and %d, got %d", maxQuantity, q)
			}
			if p := it.GetUnitPriceMinor(); p < 0 || p > maxUnitPrice {
				v.add(field+".unit_price_minor", "must be between 0 and %d, got %d", maxUnitPrice, p)
			}
		}
	}
	return v.err()
}

func isCurrencyCode(s string) bool {
	if len(s) != currencyCodeSize {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}

func validateOrderID(orderID string) error {
	var v violations
	v.id("order_id", orderID, eventstore.MaxIDLen, true)
	return v.err()
}

// transitionRequest is what every transition request has in common; the
// generated getters of ApproveOrderRequest etc. satisfy it.
type transitionRequest interface {
	GetOrderId() string
	GetRequestId() string
	GetExpectedRevision() uint64
}

// reasonRule says whether a transition takes a reason.
type reasonRule int

const (
	reasonNone reasonRule = iota
	reasonOptional
	reasonRequired
)

func validateTransition(req transitionRequest, reason string, rule reasonRule) error {
	var v violations
	v.id("order_id", req.GetOrderId(), eventstore.MaxIDLen, true)
	v.id("request_id", req.GetRequestId(), eventstore.MaxRequestIDLen, false)
	if rule != reasonNone {
		v.text("reason", reason, maxReasonLen, rule == reasonRequired)
	}
	return v.err()
}
