package consumers

import (
	"errors"
	"strings"
	"testing"
)

// FuzzAckToken feeds arbitrary tokens and subjects to the ack token code:
// nothing panics, only subjects that are JetStream ack subjects of the
// stream ORDERS are accepted (no wildcard, no other stream, no API
// subject), a token verifies exactly when it was signed here for such a
// subject, and any other string is refused as malformed or forged.
func FuzzAckToken(f *testing.F) {
	tokens := newAckTokens([]byte("fuzz-key-0123456789abcdef0123456789"))
	f.Add("$JS.ACK.ORDERS.c.1.2.3.4.0", "")
	f.Add("$JS.ACK.domain.hash.ORDERS.c.1.2.3.4.0.xyz", "")
	f.Add("$JS.API.STREAM.DELETE.ORDERS", "")
	f.Add("$JS.ACK.ORDERS.*.1.2.3.4.0", "AQ")
	f.Add("", tokens.Sign("$JS.ACK.ORDERS.c.1.2.3.4.0"))
	f.Fuzz(func(t *testing.T, subject, token string) {
		ack, ok := ParseAckSubject(subject)
		if ok {
			if strings.ContainsAny(subject, "*> \t\r\n") || !strings.HasPrefix(subject, "$JS.ACK.") || ack.Subject != subject {
				t.Fatalf("accepted ack subject %q", subject)
			}
			got, err := tokens.Verify(tokens.Sign(subject))
			if err != nil || got != ack {
				t.Fatalf("round trip of %q: %+v, %v", subject, got, err)
			}
		}
		got, err := tokens.Verify(token)
		switch {
		case err == nil:
			if again, ok := ParseAckSubject(got.Subject); !ok || again != got || tokens.Sign(got.Subject) != token {
				t.Fatalf("verified a token for %q that was not signed here", got.Subject)
			}
		case !errors.Is(err, ErrMalformedToken) && !errors.Is(err, ErrForgedToken):
			t.Fatalf("unexpected error %v", err)
		}
	})
}
