package server

import (
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"

	"github.com/ordersd/ordersd/consumers"
	"github.com/ordersd/ordersd/internal/eventstore"
)

// Bounds and defaults of ConsumeOrders and AckOrders.
const (
	defaultMaxInFlight = 64
	maxMaxInFlight     = 1000
	maxAcksPerCall     = 1000
	maxMaxDeliveries   = 10_000
	maxBackoffSteps    = 10
	minAckWait         = time.Second
	maxAckWait         = 12 * time.Hour
)

// consumeSpec checks a ConsumeOrders request and turns it into the work
// queue it asks for.
func consumeSpec(req *ordersv1.ConsumeOrdersRequest) (consumers.ConsumeSpec, error) {
	var v violations
	v.id("consumer", req.GetConsumer(), eventstore.MaxIDLen, true)
	v.statuses("statuses", req.GetStatuses())
	spec := consumers.ConsumeSpec{
		Consumer:    req.GetConsumer(),
		MaxInFlight: int(req.GetMaxInFlight()),
		AutoAck:     req.GetAutoAck(),
		Heartbeat:   v.heartbeat("heartbeat_interval", req.GetHeartbeatInterval()),
	}
	switch n := req.GetMaxInFlight(); {
	case n == 0:
		spec.MaxInFlight = defaultMaxInFlight
	case n < 1 || n > maxMaxInFlight:
		v.add("max_in_flight", "must be between 1 and %d, got %d", maxMaxInFlight, n)
	}
	s := req.GetSettings()
	spec.Settings.AckWait = v.duration("settings.ack_wait", s.GetAckWait(), minAckWait, maxAckWait)
	switch n := s.GetMaxDeliveries(); {
	case n < 0 || n > maxMaxDeliveries:
		v.add("settings.max_deliveries", "must be between 0 (no limit) and %d, got %d", maxMaxDeliveries, n)
	default:
		spec.Settings.MaxDeliveries = int(n)
	}
	if len(s.GetBackoff()) > maxBackoffSteps {
		v.add("settings.backoff", "at most %d steps are allowed", maxBackoffSteps)
	} else {
		for i, d := range s.GetBackoff() {
			spec.Settings.Backoff = append(spec.Settings.Backoff, v.duration(fmt.Sprintf("settings.backoff[%d]", i), d, minAckWait, maxAckWait))
		}
		if n := len(s.GetBackoff()); n > 0 && spec.Settings.MaxDeliveries != 0 && spec.Settings.MaxDeliveries <= n {
			v.add("settings.max_deliveries", "must be greater than the %d backoff steps", n)
		}
		if len(s.GetBackoff()) > 0 && s.GetAckWait() != nil {
			v.add("settings.ack_wait", "cannot be set with backoff: the first backoff step is the ack wait")
		}
	}
	switch start := s.GetStart().(type) {
	case *ordersv1.ConsumerSettings_StartNew:
		spec.Settings.StartNew = start.StartNew
	case *ordersv1.ConsumerSettings_StartSequence:
		if start.StartSequence == 0 {
			v.add("settings.start_sequence", "must be 1 or more")
		}
		spec.Settings.StartSequence = start.StartSequence
	case *ordersv1.ConsumerSettings_StartTime:
		spec.Settings.StartTime = v.timestamp("settings.start_time", start.StartTime)
	}
	v.id("customer_id", req.GetCustomerId(), eventstore.MaxIDLen, false)
	spec.Filters = v.filters("statuses", eventstore.Filter{Statuses: req.GetStatuses(), CustomerID: req.GetCustomerId()})
	return spec, v.err()
}

// ackSettles checks an AckOrders request and verifies every token before
// any ack is applied. Malformed input is INVALID_ARGUMENT; a token not
// signed by this deployment is PERMISSION_DENIED.
// staleAcks is INVALID_ARGUMENT, naming every ack whose token was issued
// in another layout than l, or for another epoch of its stream than the
// current one (epochs, by partition); nil when none is.
func staleAcks(settles []consumers.Settle, l eventstore.Layout, epochs []eventstore.Epoch) error {
	var v violations
	for i, s := range settles {
		if err := s.Ack.CheckIssued(l, epochs); err != nil {
			v.add(fmt.Sprintf("acks[%d].ack_token", i), "%s", issuedElsewhere(err))
		}
	}
	return v.err()
}

// issuedElsewhere is the violation of an ack token that CheckIssued refused.
func issuedElsewhere(err error) string {
	if errors.Is(err, consumers.ErrOtherLayoutToken) {
		return err.Error() + ": its delivery is not one of these streams'; consume the event again for a new token"
	}
	return staleAckToken
}

// staleAckToken is the violation of an ack token of an earlier stream
// ORDERS (consumers.ErrStaleToken).
const staleAckToken = "was issued for an earlier incarnation of the stream ORDERS (before `ordersd migrate` or a re-creation of the stream): " +
	"its delivery no longer exists; consume the event again for a new token"

func ackSettles(req *ordersv1.AckOrdersRequest, tokens AckTokenVerifier) ([]consumers.Settle, error) {
	var v violations
	switch n := len(req.GetAcks()); {
	case n == 0:
		v.add("acks", "at least one ack is required")
	case n > maxAcksPerCall:
		v.add("acks", "at most %d acks are allowed per call, got %d", maxAcksPerCall, n)
	}
	if len(v) > 0 {
		return nil, v.err()
	}
	settles := make([]consumers.Settle, len(req.GetAcks()))
	var forged []int
	for i, a := range req.GetAcks() {
		field := fmt.Sprintf("acks[%d]", i)
		s := &settles[i]
		*s = v.settleAction(func() string { return field }, a.GetAction(), a.GetNakDelay(), a.GetReason())
		if a.GetAckToken() == "" {
			v.add(field+".ack_token", "is required")
			continue
		}
		ack, err := tokens.Verify(a.GetAckToken())
		switch {
		case errors.Is(err, consumers.ErrForgedToken):
			forged = append(forged, i)
		case errors.Is(err, consumers.ErrStaleToken):
			v.add(field+".ack_token", "%s", staleAckToken)
		case err != nil:
			v.add(field+".ack_token", "is not an ack token from ConsumeOrders")
		}
		s.Ack = ack
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	if len(forged) > 0 {
		return nil, permissionDenied(fmt.Sprintf("ack token of acks[%d] was not issued by this deployment", forged[0]))
	}
	return settles, nil
}

// settleAction checks the action of one ack (of AckOrders or StreamOrders)
// and its nak_delay and reason; the Settle it returns has no Ack yet.
// field names the ack in a violation; it is called only for one.
func (v *violations) settleAction(field func() string, action ordersv1.AckAction, nakDelay *durationpb.Duration, reason string) consumers.Settle {
	var s consumers.Settle
	switch action {
	case ordersv1.AckAction_ACK_ACTION_ACK:
		s.Action = consumers.ActionAck
	case ordersv1.AckAction_ACK_ACTION_NAK:
		s.Action = consumers.ActionNak
		if nakDelay != nil {
			s.NakDelay = v.duration(field()+".nak_delay", nakDelay, 0, maxAckWait)
		}
	case ordersv1.AckAction_ACK_ACTION_IN_PROGRESS:
		s.Action = consumers.ActionInProgress
	case ordersv1.AckAction_ACK_ACTION_TERM:
		s.Action = consumers.ActionTerm
		if reason != "" {
			v.text(field()+".reason", reason, maxReasonLen, false)
		}
		s.Reason = reason
	default:
		v.add(field()+".action", "must be ACK_ACTION_ACK, _NAK, _IN_PROGRESS or _TERM, got %d", int32(action))
	}
	if nakDelay != nil && action != ordersv1.AckAction_ACK_ACTION_NAK {
		v.add(field()+".nak_delay", "is only for ACK_ACTION_NAK")
	}
	if reason != "" && action != ordersv1.AckAction_ACK_ACTION_TERM {
		v.add(field()+".reason", "is only for ACK_ACTION_TERM")
	}
	return s
}
