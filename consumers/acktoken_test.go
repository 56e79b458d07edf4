package consumers

import (
	"errors"
	"strings"
	"testing"

	"github.com/ordersd/ordersd/internal/deadletters"
	"github.com/ordersd/ordersd/internal/eventstore"
)

// testEpoch stands for the epoch of the stream ORDERS in these tests.
var testEpoch = eventstore.Epoch{0xe, 1, 2, 3, 4, 5, 6, 7}

// ackSubject is a JetStream ack subject of the stream ORDERS whose token,
// 1+32+26 = 59 bytes, ends in a base64 character with unused low bits.
const ackSubject = "$JS.ACK.ORDERS.c.1.2.3.4.0"

// withTrailingBitsChanged returns tok with the lowest bit of its last
// character flipped. In unpadded base64 of a length that is not a multiple
// of 3 that bit is padding: a lax decoder reads the same bytes from both.
func withTrailingBitsChanged(t testing.TB, tok string) string {
	t.Helper()
	if n := len(tok) % 4; n != 2 && n != 3 {
		t.Fatalf("token of length %d has no trailing bits", len(tok))
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, tok[len(tok)-1])
	if i < 0 {
		t.Fatalf("token %q does not end in a base64url character", tok)
	}
	return tok[:len(tok)-1] + string(alphabet[i^1])
}

// Only the exact string Sign made verifies: the same bytes in any other
// spelling (other padding bits, CR or LF inside), an altered or truncated
// token, one signed with another key, and anything that is no token at all
// are refused, each with the error that says why.
func TestAckTokensVerifyOnlyWhatWasSigned(t *testing.T) {
	t.Parallel()
	tokens := newAckTokens([]byte("test-key-0123456789abcdef0123456789"))
	other := newAckTokens([]byte("other-key-0123456789abcdef012345678"))
	good := tokens.Sign(testEpoch, ackSubject)

	got, err := tokens.Verify(good)
	if err != nil {
		t.Fatalf("Verify(Sign(%q)) = %v", ackSubject, err)
	}
	want := AckSubject{Subject: ackSubject, Stream: eventstore.StreamName, Consumer: "c", Delivered: 1, StreamSeq: 2, Epoch: testEpoch}
	if got != want {
		t.Fatalf("Verify(Sign(%q)) = %+v, want %+v", ackSubject, got, want)
	}
	// The delivery of a redrive marker (a redriven dead letter) is acked the same way.
	const redriveAck = "$JS.ACK.ORDERS_REDRIVE.c.1.7.3.4.0"
	got, err = tokens.Verify(tokens.Sign(testEpoch, redriveAck))
	if want := (AckSubject{Subject: redriveAck, Stream: deadletters.RedriveStream, Consumer: "c", Delivered: 1, StreamSeq: 7, Epoch: testEpoch}); err != nil || got != want {
		t.Fatalf("Verify(Sign(%q)) = %+v, %v; want %+v", redriveAck, got, err, want)
	}

	// A byte of the signed subject changed: the MAC no longer matches.
	raw, ok := decode(good)
	if !ok {
		t.Fatal("a signed token does not decode")
	}
	raw[len(raw)-1] ^= 1 // "...4.0" → "...4.1"
	altered := tokenEncoding.EncodeToString(raw)
	raw[len(raw)-1] ^= 1
	raw[1] ^= 1 // the epoch: the MAC covers it too
	reEpoched := tokenEncoding.EncodeToString(raw)
	raw[1] ^= 1
	// A token of an ordersd that put no epoch in its tokens (version 1:
	// version, MAC of version and subject, subject).
	epochless := tokenEncoding.EncodeToString(append(append([]byte{epochlessVersion}, tokens.mac(epochlessVersion, nil, ackSubject)...), ackSubject...))

	for _, c := range []struct {
		name, token string
		want        error
	}{
		{"the same bytes with other trailing bits", withTrailingBitsChanged(t, good), ErrMalformedToken},
		{"a line feed inside", good[:10] + "\n" + good[10:], ErrMalformedToken},
		{"a carriage return at the end", good + "\r", ErrMalformedToken},
		{"padding added", good + "=", ErrMalformedToken},
		{"truncated", tokenEncoding.EncodeToString(raw[:len(raw)-3]), ErrForgedToken},
		{"the subject altered", altered, ErrForgedToken},
		{"the epoch altered", reEpoched, ErrForgedToken},
		{"of an ordersd without epochs", epochless, ErrStaleToken},
		{"of an ordersd without epochs, another key", tokenEncoding.EncodeToString(append(append([]byte{epochlessVersion}, other.mac(epochlessVersion, nil, ackSubject)...), ackSubject...)), ErrForgedToken},
		{"signed with another key", other.Sign(testEpoch, ackSubject), ErrForgedToken},
		{"empty", "", ErrMalformedToken},
		{"not base64", "not a token!", ErrMalformedToken},
		{"too short for a MAC", tokenEncoding.EncodeToString([]byte{tokenVersion, 1, 2, 3}), ErrMalformedToken},
		{"another version", tokenEncoding.EncodeToString(append([]byte{partitionedVersion + 1}, raw[1:]...)), ErrMalformedToken},
		{"a signed subject that is not an ack subject", tokens.Sign(testEpoch, "$JS.API.STREAM.DELETE.ORDERS"), ErrMalformedToken},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.token == good {
				t.Fatal("the case is the good token itself")
			}
			got, err := tokens.Verify(c.token)
			if !errors.Is(err, c.want) {
				t.Fatalf("Verify(%q) = %+v, %v; want %v", c.token, got, err, c.want)
			}
		})
	}
}

// A token verifies with the epoch it was signed for, and CheckEpoch
// refuses it for any other: after a migration, whatever the key.
func TestAckTokensOfAnotherEpochAreStale(t *testing.T) {
	t.Parallel()
	tokens := newAckTokens([]byte("test-key-0123456789abcdef0123456789"))
	ack, err := tokens.Verify(tokens.Sign(testEpoch, ackSubject))
	if err != nil {
		t.Fatal(err)
	}
	if err := ack.CheckEpoch(testEpoch); err != nil {
		t.Errorf("CheckEpoch of its own epoch: %v", err)
	}
	later := testEpoch
	later[eventstore.EpochLen-1] ^= 0x80
	if err := ack.CheckEpoch(later); !errors.Is(err, ErrStaleToken) {
		t.Errorf("CheckEpoch of another epoch: %v, want ErrStaleToken", err)
	}
}

// A token of layout 3 names its partition: it verifies to that partition
// only with an ack subject of that partition's stream (or of the redrive
// stream), and CheckIssued tells a token of the other layout from a stale
// one.
func TestPartitionedAckTokensNameTheirPartition(t *testing.T) {
	tokens := RandomAckTokens()
	p := eventstore.Partition{Number: 2, Of: 3}
	subject := "$JS.ACK.ORDERS_2.c.1.7.7.1.0"
	ack, err := tokens.Verify(tokens.SignIn(p, testEpoch, subject))
	if err != nil || ack.Partition != p || ack.Stream != "ORDERS_2" || ack.StreamSeq != 7 || ack.Epoch != testEpoch {
		t.Fatalf("Verify(SignIn(%v, %q)) = %+v, %v", p, subject, ack, err)
	}
	epochs := []eventstore.Epoch{{}, {}, testEpoch}
	if err := ack.CheckIssued(eventstore.Layout{Partitions: 3}, epochs); err != nil {
		t.Errorf("CheckIssued in its own layout: %v", err)
	}
	if err := ack.CheckIssued(eventstore.Layout{}, epochs[:1]); !errors.Is(err, ErrOtherLayoutToken) {
		t.Errorf("CheckIssued in layout 2: %v, want ErrOtherLayoutToken", err)
	}
	if err := ack.CheckIssued(eventstore.Layout{Partitions: 3}, []eventstore.Epoch{{}, {}, {1}}); !errors.Is(err, ErrStaleToken) {
		t.Errorf("CheckIssued after partition 2's stream was made again: %v, want ErrStaleToken", err)
	}
	for _, bad := range []string{
		tokens.SignIn(eventstore.Partition{Number: 1, Of: 3}, testEpoch, subject), // another partition's stream
		tokens.SignIn(eventstore.Partition{}, testEpoch, subject),                 // a layout-2 token of a partition's subject
	} {
		if got, err := tokens.Verify(bad); !errors.Is(err, ErrMalformedToken) {
			t.Errorf("Verify(a token whose subject is not its partition's) = %+v, %v; want ErrMalformedToken", got, err)
		}
	}
	if _, err := tokens.Verify(tokens.SignIn(p, testEpoch, "$JS.ACK.ORDERS_REDRIVE.c.1.7.7.1.0")); err != nil {
		t.Errorf("Verify(a redriven delivery's token of layout 3) = %v", err)
	}
}
