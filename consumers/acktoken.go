package consumers

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"sync"

	"github.com/ordersd/ordersd/internal/deadletters"
	"github.com/ordersd/ordersd/internal/eventstore"
)

// Errors of Verify.
var (
	// ErrMalformedToken: not an ack token at all (wrong encoding, length or version).
	ErrMalformedToken = errors.New("malformed ack token")
	// ErrForgedToken: shaped like a token but not signed with this
	// deployment's key: forged, altered, or from another deployment.
	ErrForgedToken = errors.New("ack token not signed by this deployment")
	// ErrStaleToken: signed by this deployment, but for another epoch of
	// the stream ORDERS (before a migration or a re-creation, or by an
	// ordersd that put no epoch in its tokens): its delivery is gone.
	ErrStaleToken = errors.New("ack token issued for an earlier incarnation of the stream ORDERS (before a migration or re-creation)")
	// ErrOtherLayoutToken: signed by this deployment, but in another
	// layout (or number of partitions) than the streams have now.
	ErrOtherLayoutToken = errors.New("ack token issued in another layout of the orders' streams")
)

const (
	// tokenVersion leads every token of layout 2: 2 carries the stream's epoch.
	tokenVersion = 2
	// partitionedVersion leads every token of layout 3: the partition's
	// number and N, then its stream's epoch.
	partitionedVersion = 3
	// partitionSize is what names the partition in a token of
	// partitionedVersion: its number and N, a byte each (MaxPartitions fits).
	partitionSize = 2
	// epochlessVersion is the version of tokens without an epoch, from
	// before epochs: recognised, and refused as stale.
	epochlessVersion = 1
	macSize          = sha256.Size
	// headerSize is what precedes the subject: version, epoch, MAC.
	headerSize = 1 + eventstore.EpochLen + macSize
	// maxForeignTokenLen bounds the tokens of an ack subject that are
	// JetStream's, not ordersd's (domain, account hash, trailing token),
	// so eventstore.MaxIDLen does not apply to them.
	maxForeignTokenLen = 256
)

// AckTokens signs and verifies ack tokens. A token is the JetStream ack
// subject of one delivery and the epoch of the stream it was delivered
// from (eventstore.Epoch), signed with HMAC-SHA256, so any ordersd node
// sharing the key can ack the delivery, nothing but a subject ordersd
// itself received from JetStream can ever be published to, and a token of
// an earlier stream ORDERS never acks what the new one holds at its
// sequence.
type AckTokens struct {
	key  []byte
	macs sync.Pool // of hash.Hash: HMAC-SHA256 with key, reused
}

// NewAckTokens returns signer and verifier for key, which must be at least
// 32 bytes (else the error wraps ErrInvalidOption).
func NewAckTokens(key []byte) (*AckTokens, error) {
	if len(key) < 32 {
		return nil, fmt.Errorf("%w: ack token key must be at least 32 bytes, got %d", ErrInvalidOption, len(key))
	}
	return newAckTokens(append([]byte(nil), key...)), nil
}

// RandomAckTokens returns AckTokens with a fresh random key: tokens work
// only on this process, and not after a restart.
func RandomAckTokens() *AckTokens {
	key := make([]byte, 32)
	_, _ = rand.Read(key) // crypto/rand.Read never fails
	return newAckTokens(key)
}

// DeriveKey returns a key for another purpose (ListOrders page tokens, say),
// derived from the deployment's key, so that one shared key file serves
// every token a node hands out and no two purposes share a key.
func (t *AckTokens) DeriveKey(purpose string) []byte {
	h := hmac.New(sha256.New, t.key)
	h.Write([]byte(purpose))
	return h.Sum(nil)
}

func newAckTokens(key []byte) *AckTokens {
	t := &AckTokens{key: key}
	t.macs.New = func() any { return hmac.New(sha256.New, t.key) }
	return t
}

// Sign makes the token of an ack subject of a delivery from the stream
// ORDERS (layout 2) of epoch.
func (t *AckTokens) Sign(epoch eventstore.Epoch, ackSubject string) string {
	return t.SignIn(eventstore.Partition{}, epoch, ackSubject)
}

// SignIn makes the token of an ack subject of a delivery of the queue's
// consumer on partition p, whose stream is of epoch (a redriven dead
// letter's: the first partition's). Layout 2's tokens are as they always
// were (tokenVersion); layout 3's name the partition (partitionedVersion).
func (t *AckTokens) SignIn(p eventstore.Partition, epoch eventstore.Epoch, ackSubject string) string {
	buf := make([]byte, 0, headerSize+partitionSize+len(ackSubject))
	if p.Of == 0 {
		buf = append(buf, tokenVersion)
		buf = append(buf, epoch[:]...)
		buf = append(buf, t.mac(tokenVersion, epoch[:], ackSubject)...)
	} else {
		head := append([]byte{byte(p.Number), byte(p.Of)}, epoch[:]...)
		buf = append(buf, partitionedVersion)
		buf = append(buf, head...)
		buf = append(buf, t.mac(partitionedVersion, head, ackSubject)...)
	}
	buf = append(buf, ackSubject...)
	return tokenEncoding.EncodeToString(buf)
}

// tokenEncoding is the encoding of tokens. It is strict: unpadded base64
// ignores the unused low bits of the last character, so without Strict two
// strings (…LjA and …LjB, say) would decode to the same bytes and verify
// as one token. Strict still skips CR and LF, which decode checks by
// length: a token verifies only in the one form Sign wrote it.
var tokenEncoding = base64.RawURLEncoding.Strict()

// decode returns the bytes of a token in its canonical encoding, and
// false for any other string.
func decode(token string) ([]byte, bool) {
	raw, err := tokenEncoding.DecodeString(token)
	if err != nil || tokenEncoding.EncodedLen(len(raw)) != len(token) {
		return nil, false
	}
	return raw, true
}

// Verify checks a token and returns the delivery it stands for, with the
// epoch of the stream it was issued for: the caller compares it with the
// stream's (CheckEpoch). A token of an ordersd that put no epoch in its
// tokens is ErrStaleToken.
func (t *AckTokens) Verify(token string) (AckSubject, error) {
	raw, ok := decode(token)
	if ok && len(raw) >= 1+macSize+1 && raw[0] == epochlessVersion {
		if !hmac.Equal(raw[1:1+macSize], t.mac(epochlessVersion, nil, string(raw[1+macSize:]))) {
			return AckSubject{}, ErrForgedToken
		}
		return AckSubject{}, ErrStaleToken
	}
	if ok && len(raw) >= headerSize+partitionSize+1 && raw[0] == partitionedVersion {
		return t.verifyPartitioned(raw)
	}
	if !ok || len(raw) < headerSize+1 || raw[0] != tokenVersion {
		return AckSubject{}, ErrMalformedToken
	}
	issued, mac, subject := raw[1:1+eventstore.EpochLen], raw[1+eventstore.EpochLen:headerSize], string(raw[headerSize:])
	if !hmac.Equal(mac, t.mac(tokenVersion, issued, subject)) {
		return AckSubject{}, ErrForgedToken
	}
	ack, ok := ParseAckSubject(subject)
	if !ok || (ack.Stream != eventstore.StreamName && ack.Stream != deadletters.RedriveStream) { // signed by us, so never expected; refused all the same
		return AckSubject{}, ErrMalformedToken
	}
	ack.Epoch = eventstore.Epoch(issued)
	return ack, nil
}

// verifyPartitioned is Verify of a token of partitionedVersion.
func (t *AckTokens) verifyPartitioned(raw []byte) (AckSubject, error) {
	head := raw[1 : 1+partitionSize+eventstore.EpochLen]
	mac, subject := raw[len(head)+1:len(head)+1+macSize], string(raw[len(head)+1+macSize:])
	if !hmac.Equal(mac, t.mac(partitionedVersion, head, subject)) {
		return AckSubject{}, ErrForgedToken
	}
	p := eventstore.Partition{Number: int(head[0]), Of: int(head[1])}
	ack, ok := ParseAckSubject(subject)
	if !ok || p.Of == 0 || p.Number >= p.Of || (ack.Stream != p.Stream() && ack.Stream != deadletters.RedriveStream) {
		return AckSubject{}, ErrMalformedToken // signed by us, so never expected
	}
	ack.Partition, ack.Epoch = p, eventstore.Epoch(head[partitionSize:])
	return ack, nil
}

// CheckLayout is ErrOtherLayoutToken, in words that name both layouts,
// when ack was issued in another layout than l.
func (ack AckSubject) CheckLayout(l eventstore.Layout) error {
	if ack.Partition.Of == l.Partitions {
		return nil
	}
	describe := func(n int) string {
		if n == 0 {
			return "layout " + eventstore.UnpartitionedLayout + " (one stream " + eventstore.StreamName + ")"
		}
		return fmt.Sprintf("layout %s with %d partitions", eventstore.PartitionedLayout, n)
	}
	return fmt.Errorf("%w: it was issued in %s, and the orders are now in %s", ErrOtherLayoutToken, describe(ack.Partition.Of), describe(l.Partitions))
}

// CheckIssued checks that ack was issued in the layout l the streams have
// now (CheckLayout) and for the current epoch of its partition's stream
// (epochs, by partition: eventstore.Store.Epochs).
func (ack AckSubject) CheckIssued(l eventstore.Layout, epochs []eventstore.Epoch) error {
	if err := ack.CheckLayout(l); err != nil {
		return err
	}
	if ack.Partition.Number >= len(epochs) {
		return ErrStaleToken
	}
	return ack.CheckEpoch(epochs[ack.Partition.Number])
}

// CheckEpoch is ErrStaleToken when ack was issued for a stream of another
// epoch than the current one.
func (ack AckSubject) CheckEpoch(current eventstore.Epoch) error {
	if ack.Epoch != current {
		return ErrStaleToken
	}
	return nil
}

// mac is the MAC of a token of version with epoch (none in version 1)
// and subject.
func (t *AckTokens) mac(version byte, epoch []byte, subject string) []byte {
	h := t.macs.Get().(hash.Hash)
	defer t.macs.Put(h)
	h.Reset()
	h.Write([]byte{version})
	h.Write(epoch)
	h.Write([]byte(subject))
	return h.Sum(nil)
}

// AckSubject is a parsed JetStream ack subject: where to publish the ack
// of one delivery of one event of the stream ORDERS, or of one redrive
// marker of ORDERS_REDRIVE (a redriven dead letter).
type AckSubject struct {
	Subject   string // the whole subject, to publish the ack on
	Stream    string // eventstore.StreamName or deadletters.RedriveStream
	Consumer  string
	Delivered uint64 // delivery attempt
	StreamSeq uint64
	// Epoch is the epoch of the stream ORDERS the token was issued for
	// (zero when parsed from a subject, not from a token).
	Epoch eventstore.Epoch
	// Partition is the partition whose consumer the token was issued by
	// (the zero Partition in layout 2, or when parsed from a subject).
	Partition eventstore.Partition
}

// ackedStream reports whether name is a stream whose deliveries ordersd
// acks: ORDERS, a partition's ORDERS_<k>, or ORDERS_REDRIVE.
func ackedStream(name string) bool {
	if name == eventstore.StreamName || name == deadletters.RedriveStream {
		return true
	}
	_, ok := eventstore.Layout{Partitions: eventstore.MaxPartitions}.PartitionOfStream(name)
	return ok
}

// ParseAckSubject parses the reply subject of a message delivered by a
// consumer of ORDERS or of a partition's ORDERS_<k> (or of ORDERS_REDRIVE):
//
//	$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>
//	$JS.ACK.<domain>.<account hash>.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>[.<token>]
//
// It accepts nothing else, so a token can only ever ack, never publish
// elsewhere.
func ParseAckSubject(subject string) (AckSubject, bool) {
	tokens := strings.Split(subject, ".")
	if len(tokens) < 9 || tokens[0] != "$JS" || tokens[1] != "ACK" {
		return AckSubject{}, false
	}
	rest := tokens[2:]
	switch len(tokens) {
	case 9:
	case 11, 12:
		rest = tokens[4:]
		// The domain, account hash and trailing token: plain names, never
		// empty, never a wildcard or a space (found by FuzzAckToken).
		extra := append([]string{tokens[2], tokens[3]}, tokens[11:]...)
		for _, tok := range extra {
			if !eventstore.ValidToken(tok, maxForeignTokenLen) {
				return AckSubject{}, false
			}
		}
	default:
		return AckSubject{}, false
	}
	if !ackedStream(rest[0]) || !eventstore.ValidToken(rest[1], eventstore.MaxIDLen) {
		return AckSubject{}, false
	}
	var nums [5]uint64
	for i := range nums {
		n, err := strconv.ParseUint(rest[2+i], 10, 64)
		if err != nil {
			return AckSubject{}, false
		}
		nums[i] = n
	}
	return AckSubject{Subject: subject, Stream: rest[0], Consumer: rest[1], Delivered: nums[0], StreamSeq: nums[1]}, true
}
