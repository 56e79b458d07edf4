package client

import (
	"errors"
	"fmt"
	"time"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// Defaults of ConsumeOptions.
const (
	DefaultMaxInFlight   = 64
	maxMaxInFlight       = 1000 // ordersd's bound on max_in_flight
	defaultAckWait       = 30 * time.Second
	DefaultMaxExtension  = time.Hour
	DefaultNakMinDelay   = time.Second
	DefaultNakMaxDelay   = time.Minute
	DefaultDrainTimeout  = 30 * time.Second
	DefaultHeartbeat     = 5 * time.Second
	DefaultAckBatchDelay = 10 * time.Millisecond
	maxAckBatch          = 1000 // ordersd's bound on acks per AckOrders call
)

// ConsumeOptions tune Consume. The zero value consumes every event type
// with the defaults.
type ConsumeOptions struct {
	// Statuses are the event types the consumer receives (its filter);
	// empty means every event. They must match an existing consumer's.
	Statuses []ordersv1.OrderStatus
	// Settings configure the consumer when Consume creates it (ack wait,
	// delivery limit, where it starts); nil for ordersd's defaults.
	Settings *ordersv1.ConsumerSettings
	// MaxInFlight bounds the events held at once: handlers running, and
	// events received but not yet settled. 1 to 1000; DefaultMaxInFlight
	// when zero.
	MaxInFlight int
	// ExtendEvery is how often the ack deadline of each event whose handler
	// still runs is extended (ACK_ACTION_IN_PROGRESS). Default: a third of
	// the ack wait in Settings (30 s when unset), so two extensions may be
	// lost before the event is redelivered.
	ExtendEvery time.Duration
	// MaxExtension is how long an event's deadline is extended at most;
	// after that JetStream redelivers it (to another client) even while its
	// handler runs. DefaultMaxExtension when zero.
	MaxExtension time.Duration
	// NakMinDelay and NakMaxDelay bound the delay of the NAK sent when a
	// handler fails: NakMinDelay on the first delivery, doubling with each
	// delivery attempt up to NakMaxDelay. Defaults: 1 s and 1 min.
	NakMinDelay, NakMaxDelay time.Duration
	// DrainTimeout is how long a stopping Consume lets running handlers
	// finish before it cancels their context. DefaultDrainTimeout when zero.
	DrainTimeout time.Duration
	// Heartbeat is the stream's heartbeat interval; a stream silent for
	// three of them is reopened. 1 s to 5 min; DefaultHeartbeat when zero.
	Heartbeat time.Duration
	// AckBatchDelay is how long a settled event may wait for others to
	// share its AckOrders call. DefaultAckBatchDelay when zero.
	AckBatchDelay time.Duration
}

// withDefaults validates o and fills in its defaults.
func (o ConsumeOptions) withDefaults() (ConsumeOptions, error) {
	if o.MaxInFlight == 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.MaxExtension == 0 {
		o.MaxExtension = DefaultMaxExtension
	}
	if o.NakMinDelay == 0 {
		o.NakMinDelay = DefaultNakMinDelay
	}
	if o.NakMaxDelay == 0 {
		o.NakMaxDelay = max(DefaultNakMaxDelay, o.NakMinDelay)
	}
	if o.DrainTimeout == 0 {
		o.DrainTimeout = DefaultDrainTimeout
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = DefaultHeartbeat
	}
	if o.AckBatchDelay == 0 {
		o.AckBatchDelay = DefaultAckBatchDelay
	}
	if o.ExtendEvery == 0 {
		wait := defaultAckWait
		if d := o.Settings.GetAckWait(); d != nil {
			wait = d.AsDuration()
		} else if b := o.Settings.GetBackoff(); len(b) > 0 {
			wait = b[0].AsDuration()
		}
		o.ExtendEvery = wait / 3
	}
	switch {
	case o.MaxInFlight < 1 || o.MaxInFlight > maxMaxInFlight:
		return o, fmt.Errorf("%w: MaxInFlight must be 1 to %d, got %d", ErrInvalidOption, maxMaxInFlight, o.MaxInFlight)
	case o.ExtendEvery <= 0 || o.MaxExtension < 0 || o.DrainTimeout < 0 || o.AckBatchDelay < 0:
		return o, fmt.Errorf("%w: durations must be positive", ErrInvalidOption)
	case o.NakMinDelay < 0 || o.NakMaxDelay < o.NakMinDelay:
		return o, fmt.Errorf("%w: NakMinDelay must be 0 or more and at most NakMaxDelay", ErrInvalidOption)
	case o.Heartbeat < time.Second || o.Heartbeat > 5*time.Minute:
		return o, fmt.Errorf("%w: Heartbeat must be 1s to 5m, got %s", ErrInvalidOption, o.Heartbeat)
	}
	return o, nil
}

// nakDelay is the redelivery delay after a handler failed on its
// attempt-th delivery.
func (o ConsumeOptions) nakDelay(attempt uint64) time.Duration {
	d := o.NakMinDelay
	for i := uint64(1); i < attempt && d < o.NakMaxDelay; i++ {
		d *= 2
	}
	return min(d, o.NakMaxDelay)
}

// terminal is the error of Terminate.
type terminal struct{ reason string }

func (t terminal) Error() string { return "terminated: " + t.reason }

// Terminate is what a Consume handler returns for an event that can never
// be processed (malformed for this consumer, say): it is dropped for good
// (ACK_ACTION_TERM) with reason, instead of redelivered.
func Terminate(reason string) error { return terminal{reason: reason} }

func terminalReason(err error) (string, bool) {
	var t terminal
	if errors.As(err, &t) {
		return t.reason, true
	}
	return "", false
}
