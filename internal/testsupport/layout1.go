package testsupport

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// PublishLayout1 stores an event the way ordersd stored it before subject
// layout 2, for tests of what finds or migrates such a stream. msg is an
// event as eventstore.EncodeEvent builds it, on
// <stream>.<event>.<customer_id>.<order_id>; it is stored on
// <stream>.<event>.<order_id>, in a stream without layout metadata, made
// with the old settings when there is none yet. It returns the stream
// sequence of the stored event.
func PublishLayout1(t testing.TB, js jetstream.JetStream, msg *nats.Msg) uint64 {
	t.Helper()
	tokens := strings.Split(msg.Subject, ".")
	if len(tokens) != 4 {
		t.Fatalf("PublishLayout1: %q is not <stream>.<event>.<customer_id>.<order_id>", msg.Subject)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream := tokens[0]
	if _, err := js.Stream(ctx, stream); err != nil {
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
			Name:       stream,
			Subjects:   []string{stream + ".>"},
			Storage:    jetstream.FileStorage,
			Duplicates: 10 * time.Minute,
			DenyDelete: true,
		}); err != nil {
			t.Fatalf("PublishLayout1: create stream %s: %v", stream, err)
		}
	}
	old := nats.NewMsg(tokens[0] + "." + tokens[1] + "." + tokens[3])
	old.Header, old.Data = msg.Header, msg.Data
	ack, err := js.PublishMsg(ctx, old)
	if err != nil {
		t.Fatalf("PublishLayout1: %v", err)
	}
	return ack.Sequence
}
