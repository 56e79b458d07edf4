package server

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"slices"
	"strconv"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
)

// PageTokens sign and verify ListOrders page tokens. A token is opaque to
// clients and tamper-evident: it carries the position to go on from in
// each partition, with the epoch of that partition's stream
// (eventstore.Epoch), and a digest of the query it belongs to, under an
// HMAC with a key every node of the deployment shares (derived from the
// ack-token key). So a page token works on any node, an altered or
// foreign one is refused, and so is one of earlier streams (before
// `ordersd migrate`, or another number of partitions), whose positions
// were renumbered.
type PageTokens struct {
	key []byte
}

// pageTokenVersion leads every token, so that the format can change.
// Version 1 carried one cursor, of the stream ORDERS; version 2 carries
// one per partition.
const pageTokenVersion = 2

// Sizes of the parts of a token: version and partition count, then per
// partition an epoch and a cursor, the query digest and the MAC.
const (
	pageTokenHeadLen      = 2
	pageTokenPartitionLen = eventstore.EpochLen + 8
	pageTokenQueryLen     = 8
	pageTokenMACLen       = 16
)

var (
	errBadPageToken   = errors.New("page token is not one this deployment issued for this query")
	errStalePageToken = errors.New("page token was issued for earlier streams of the orders (before `ordersd migrate`, a re-creation of a stream, or in another number of partitions): start the listing again")
)

// NewPageTokens returns signer and verifier for key (32 bytes or more).
func NewPageTokens(key []byte) *PageTokens {
	return &PageTokens{key: append([]byte(nil), key...)}
}

// pageTokenLen is the size of a token over n partitions.
func pageTokenLen(n int) int {
	return pageTokenHeadLen + n*pageTokenPartitionLen + pageTokenQueryLen + pageTokenMACLen
}

// sign returns the token of the position after cursor, in the partitions
// of epochs, for req's query.
func (p *PageTokens) sign(req *ordersv1.ListOrdersRequest, epochs []eventstore.Epoch, cursor eventstore.Cursor) string {
	b := make([]byte, 0, pageTokenLen(len(epochs)))
	b = append(b, pageTokenVersion, byte(len(epochs)))
	for k, epoch := range epochs {
		b = append(b, epoch[:]...)
		b = binary.BigEndian.AppendUint64(b, cursor[k])
	}
	b = append(b, queryDigest(req)...)
	b = append(b, p.mac(b)...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// verify returns the cursor of token and the epochs of the partitions it
// is in, checking that this deployment made it for req's query; the
// caller checks the epochs (checkPageEpochs).
func (p *PageTokens) verify(req *ordersv1.ListOrdersRequest, token string) (eventstore.Cursor, []eventstore.Epoch, error) {
	b, err := base64.RawURLEncoding.Strict().DecodeString(token)
	if err != nil || len(b) < pageTokenHeadLen || b[0] != pageTokenVersion || b[1] == 0 ||
		len(b) != pageTokenLen(int(b[1])) || len(token) != base64.RawURLEncoding.EncodedLen(len(b)) {
		return nil, nil, errBadPageToken
	}
	body, mac := b[:len(b)-pageTokenMACLen], b[len(b)-pageTokenMACLen:]
	digest := body[len(body)-pageTokenQueryLen:]
	if !hmac.Equal(mac, p.mac(body)) || !hmac.Equal(digest, queryDigest(req)) {
		return nil, nil, errBadPageToken
	}
	n := int(b[1])
	cursor, epochs := make(eventstore.Cursor, n), make([]eventstore.Epoch, n)
	for k := range n {
		at := body[pageTokenHeadLen+k*pageTokenPartitionLen:]
		epochs[k] = eventstore.Epoch(at[:eventstore.EpochLen])
		cursor[k] = binary.BigEndian.Uint64(at[eventstore.EpochLen:pageTokenPartitionLen])
	}
	return cursor, epochs, nil
}

// checkPageEpochs is errStalePageToken when a token was issued in
// partitions of other epochs than the current ones (or in another number
// of partitions).
func checkPageEpochs(issued, current []eventstore.Epoch) error {
	if !slices.Equal(issued, current) {
		return errStalePageToken
	}
	return nil
}

func (p *PageTokens) mac(body []byte) []byte {
	h := hmac.New(sha256.New, p.key)
	h.Write(body)
	return h.Sum(nil)[:pageTokenMACLen]
}

// queryDigest identifies a listing's query: the customer and the set of
// statuses (in any order). The page size may change between pages.
func queryDigest(req *ordersv1.ListOrdersRequest) []byte {
	statuses := slices.Clone(req.GetStatuses())
	slices.Sort(statuses)
	h := sha256.New()
	h.Write([]byte(req.GetCustomerId()))
	for _, st := range statuses {
		h.Write([]byte{0})
		h.Write(strconv.AppendInt(nil, int64(st), 10))
	}
	return h.Sum(nil)[:pageTokenQueryLen]
}
