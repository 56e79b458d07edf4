package eventstore

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Every error nats.go gives when JetStream is unreachable, slow or moving
// its leader is UNAVAILABLE to clients, so they retry; found missing in a
// fault run: an async publish whose ack never came (the leader died
// mid-write) reached clients as INTERNAL.
func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want error
	}{
		{jetstream.ErrAsyncPublishTimeout, ErrUnavailable},
		{fmt.Errorf("publish: %w", jetstream.ErrAsyncPublishTimeout), ErrUnavailable},
		{nats.ErrTimeout, ErrUnavailable},
		{nats.ErrNoResponders, ErrUnavailable},
		{nats.ErrConnectionClosed, ErrUnavailable},
		{jetstream.ErrNoStreamResponse, ErrUnavailable},
		{jetstream.ErrConsumerLeadershipChanged, ErrUnavailable},
		{jetstream.ErrStreamNotFound, ErrUnavailable},
		{context.DeadlineExceeded, ErrUnavailable},
		{&jetstream.APIError{Code: 503, Description: "JetStream system temporarily unavailable"}, ErrUnavailable},
		// A retry of a write its leader proposed and has not committed yet
		// (the leader cut off from its peers, in a fault run).
		{&jetstream.APIError{Code: 409, ErrorCode: 10158, Description: "duplicate message id is in process"}, ErrUnavailable},
		{&jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamWrongLastSequence}, ErrConflict},
		{jetstream.ErrMsgNotFound, ErrNotFound},
		{jetstream.ErrTooManyStalledMsgs, ErrResourceExhausted},
		{&jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamMessageExceedsMaximum}, ErrResourceExhausted},
		{context.Canceled, context.Canceled},
	} {
		if got := Classify(tc.err); !errors.Is(got, tc.want) {
			t.Errorf("Classify(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	if got := Classify(errors.New("something else")); errors.Is(got, ErrUnavailable) {
		t.Errorf("an unknown error classified as %v", got)
	}
}
