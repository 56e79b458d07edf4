package consumers

import (
	"errors"
	"strings"
	"testing"

	"github.com/ordersd/ordersd/internal/eventstore"
)

// FuzzAckToken feeds arbitrary tokens and subjects to the ack token code:
// nothing panics; only subjects that are JetStream ack subjects of the
// stream ORDERS are accepted (no wildcard, no other stream, no API
// subject, a consumer name within eventstore.MaxIDLen); a token verifies
// only when it is byte for byte a token signed here, for such a subject;
// and any other string is refused as malformed or forged.
//
// The seed corpus in testdata/fuzz/FuzzAckToken holds what it found: among
// them a signed token whose last character's unused bits were changed,
// which a lax base64 decoder verified as the original.
func FuzzAckToken(f *testing.F) {
	tokens := newAckTokens([]byte("fuzz-key-0123456789abcdef0123456789"))
	epoch := eventstore.Epoch{1, 2, 3, 4, 5, 6, 7, 8}
	signed := tokens.Sign(epoch, ackSubject)
	f.Add("$JS.ACK.ORDERS.c.1.2.3.4.0", "")
	f.Add("$JS.ACK.domain.hash.ORDERS.c.1.2.3.4.0.xyz", "")
	f.Add("$JS.API.STREAM.DELETE.ORDERS", "")
	f.Add("$JS.ACK.ORDERS.*.1.2.3.4.0", "AQ")
	f.Add("$JS.ACK.OTHER.c.1.2.3.4.0", tokens.Sign(epoch, "$JS.ACK.OTHER.c.1.2.3.4.0"))
	f.Add("$JS.ACK.ORDERS."+strings.Repeat("c", eventstore.MaxIDLen+1)+".1.2.3.4.0", "")
	f.Add("", signed)
	f.Add("", withTrailingBitsChanged(f, signed))
	f.Add("", signed+"\n")
	f.Fuzz(func(t *testing.T, subject, token string) {
		ack, ok := ParseAckSubject(subject)
		if ok {
			checkAckSubject(t, ack)
			if ack.Subject != subject {
				t.Fatalf("accepted ack subject %q as %q", subject, ack.Subject)
			}
			got, err := tokens.Verify(tokens.Sign(epoch, subject))
			if ack.Epoch = epoch; err != nil || got != ack {
				t.Fatalf("round trip of %q: %+v, %v", subject, got, err)
			}
		}
		got, err := tokens.Verify(token)
		switch {
		case err == nil:
			if tokens.Sign(got.Epoch, got.Subject) != token {
				t.Fatalf("verified %q for %q, but Sign makes %q", token, got.Subject, tokens.Sign(got.Epoch, got.Subject))
			}
			checkAckSubject(t, got)
			again, ok := ParseAckSubject(got.Subject)
			again.Epoch = got.Epoch
			if !ok || again != got {
				t.Fatalf("verified a token for %q that does not parse back", got.Subject)
			}
		case !errors.Is(err, ErrMalformedToken) && !errors.Is(err, ErrForgedToken) && !errors.Is(err, ErrStaleToken):
			t.Fatalf("unexpected error %v", err)
		}
	})
}

// checkAckSubject fails unless ack is an ack subject of the stream ORDERS
// with nothing in it that could make the ack go anywhere else.
func checkAckSubject(t *testing.T, ack AckSubject) {
	t.Helper()
	s := ack.Subject
	if strings.ContainsAny(s, "*> \t\r\n") || !strings.HasPrefix(s, "$JS.ACK.") {
		t.Fatalf("accepted ack subject %q", s)
	}
	tokens := strings.Split(s, ".")
	stream := 2 // $JS.ACK.<stream>.<consumer>.…
	if len(tokens) > 9 {
		stream = 4 // $JS.ACK.<domain>.<account hash>.<stream>.<consumer>.…
	}
	if tokens[stream] != eventstore.StreamName {
		t.Fatalf("accepted ack subject %q of stream %q", s, tokens[stream])
	}
	if tokens[stream+1] != ack.Consumer || !eventstore.ValidToken(ack.Consumer, eventstore.MaxIDLen) {
		t.Fatalf("accepted ack subject %q with consumer %q", s, ack.Consumer)
	}
}
