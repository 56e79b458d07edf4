package eventstore

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// classify is Classify that also forgets the stream handle when the
// stream is gone, so that it is provisioned again on next use.
func (s *Store) classify(err error) error {
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s.streams.Store(nil)
	}
	return Classify(err)
}

// Classify turns an error from nats.go into one of the package's sentinels,
// keeping the original text for logs. A cancelled context is returned as is.
func Classify(err error) error {
	if err == nil {
		return nil
	}
	for _, known := range []error{ErrInvalidArgument, ErrNotFound, ErrAlreadyExists, ErrConflict,
		ErrIllegalTransition, ErrRequestIDReused, ErrUnavailable, ErrCorruptEvent, ErrResourceExhausted, ErrLayoutOutdated} {
		if errors.Is(err, known) {
			return err
		}
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	var apiErr *jetstream.APIError
	switch {
	case IsWrongLastSequence(err):
		return fmt.Errorf("%w: %v", ErrConflict, err)
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return fmt.Errorf("%w: %v", ErrNotFound, err)
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout),
		errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrNoResponders),
		errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrConnectionReconnecting),
		errors.Is(err, nats.ErrConnectionDraining), errors.Is(err, nats.ErrDisconnected),
		// An async publish whose ack did not come within the publish timeout
		// (the stream's leader died mid-write): a retry with the same
		// request id tells whether it was stored.
		errors.Is(err, jetstream.ErrAsyncPublishTimeout),
		// Pending when the publisher was reset to free the slots of lost
		// acks (see lostAcks): whether it was stored is as unknown.
		errors.Is(err, jetstream.ErrJetStreamPublisherClosed),
		errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount),
		// A consumer's leader moved, its server shut down, or it went away
		// (inactivity, an operator): the stream ends, the client reconnects.
		errors.Is(err, jetstream.ErrConsumerLeadershipChanged), errors.Is(err, jetstream.ErrConsumerDeleted),
		errors.Is(err, jetstream.ErrConsumerNotFound), errors.Is(err, jetstream.ErrServerShutdown):
		// Also the store's own timeout: JetStream did not answer in time. The
		// gRPC layer reports DEADLINE_EXCEEDED instead when the caller's own
		// deadline is what ran out.
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	case errors.Is(err, jetstream.ErrTooManyStalledMsgs), errors.Is(err, jetstream.ErrMaximumConsumersLimit):
		// Too many publishes wait for their acks: back-pressure, not a hang.
		return fmt.Errorf("%w: %v", ErrResourceExhausted, err)
	case errors.As(err, &apiErr) && apiErr.ErrorCode == jetStreamStoreFailed && !strings.Contains(apiErr.Description, "closed"):
		// A stream limit with DiscardNew (messages, bytes, per subject) or
		// a message too large: no room for the write. JetStream answers it
		// with code 503, so this comes before the 503 case. Its one other
		// answer with this error code is a closed store: a stream being
		// stopped.
		return fmt.Errorf("%w: %v", ErrResourceExhausted, err)
	case errors.As(err, &apiErr) && (apiErr.Code == 503 || apiErr.ErrorCode == jetStreamDuplicateInProcess):
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	case errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum || apiErr.ErrorCode == 10023 /* insufficient resources */ || apiErr.ErrorCode == 10047 /* storage resources exceeded */):
		return fmt.Errorf("%w: %v", ErrResourceExhausted, err)
	}
	return err
}

// jetStreamStoreFailed is JetStream's error code for a write the stream
// could not store (JSStreamStoreFailedF); nats.go has no constant for it.
const jetStreamStoreFailed jetstream.ErrorCode = 10077

// jetStreamDuplicateInProcess is JetStream's answer to a publish whose
// message id (request id) is that of one proposed but not yet committed
// (JSStreamDuplicateMessageConflict): on a replicated stream, a retry
// while the leader cannot reach a quorum, or before it has. Whether the
// first is stored is not known yet, as after a timeout; nats.go has no
// constant for it.
const jetStreamDuplicateInProcess jetstream.ErrorCode = 10158

// IsWrongLastSequence reports whether a publish failed its expected-last-
// sequence check (10071; 10164 on replicated streams).
func IsWrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}
