package eventstore

import (
	"crypto/sha256"

	"github.com/oklog/ulid/v2"
)

// OrderIDOf is the order id ordersd gives a create that names a request id
// but no order id: 26 characters in a ULID's alphabet, the first 128 bits
// of SHA-256 over the request id. Every attempt of one request gets the
// same id, and so the same partition, which is what finds the original
// of a retry: duplicate detection by Nats-Msg-Id works only within one
// stream, and only for the duplicate window, while the id's claim holds
// for good. Unlike a ULID, the id does not tell when it was made.
func OrderIDOf(requestID string) string {
	sum := sha256.Sum256([]byte("ordersd order id\x00" + requestID))
	return ulid.ULID(sum[:16]).String()
}
