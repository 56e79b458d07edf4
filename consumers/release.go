package consumers

import (
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// releaseDelay is the NAK delay that hands an event back for redelivery at
// once and durably: nats-server records a NAK with a delay in the
// consumer's stored state, while a plain NAK lives only in the memory of
// the consumer's server, so after a restart the event would wait out its
// whole ack wait.
const releaseDelay = time.Nanosecond

// release hands an event that was fetched but not delivered to a client
// back to JetStream, for the next fetch of any client.
func release(msg jetstream.Msg) { _ = msg.NakWithDelay(releaseDelay) }
