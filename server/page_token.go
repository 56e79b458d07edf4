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
// clients and tamper-evident: it carries the position to go on from, a
// digest of the query it belongs to and the epoch of the stream the
// position is in (eventstore.Epoch), under an HMAC with a key every node
// of the deployment shares (derived from the ack-token key), so a page
// token works on any node, an altered or foreign one is refused, and so is
// one of an earlier stream ORDERS, whose positions were renumbered.
type PageTokens struct {
	key []byte
}

// pageTokenVersion leads every token, so that the format can change.
const pageTokenVersion = 1

// Sizes of the parts of a token: version, cursor, query digest, epoch, MAC.
const (
	pageTokenQueryLen = 8
	pageTokenMACLen   = 16
	pageTokenLen      = 1 + 8 + pageTokenQueryLen + eventstore.EpochLen + pageTokenMACLen
)

var (
	errBadPageToken   = errors.New("page token is not one this deployment issued for this query")
	errStalePageToken = errors.New("page token was issued for an earlier incarnation of the stream ORDERS (before `ordersd migrate` or a re-creation of the stream): start the listing again")
)

// NewPageTokens returns signer and verifier for key (32 bytes or more).
func NewPageTokens(key []byte) *PageTokens {
	return &PageTokens{key: append([]byte(nil), key...)}
}

// sign returns the token of the position after cursor, in the stream of
// epoch, for req's query.
func (p *PageTokens) sign(req *ordersv1.ListOrdersRequest, epoch eventstore.Epoch, cursor uint64) string {
	b := make([]byte, 0, pageTokenLen)
	b = append(b, pageTokenVersion)
	b = binary.BigEndian.AppendUint64(b, cursor)
	b = append(b, queryDigest(req)...)
	b = append(b, epoch[:]...)
	b = append(b, p.mac(b)...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// verify returns the cursor of token and the epoch of the stream it is
// in, checking that this deployment made it for req's query; the caller
// checks the epoch (checkPageEpoch).
func (p *PageTokens) verify(req *ordersv1.ListOrdersRequest, token string) (uint64, eventstore.Epoch, error) {
	b, err := base64.RawURLEncoding.Strict().DecodeString(token)
	if err != nil || len(b) != pageTokenLen || len(token) != base64.RawURLEncoding.EncodedLen(pageTokenLen) || b[0] != pageTokenVersion {
		return 0, eventstore.Epoch{}, errBadPageToken
	}
	body, mac := b[:len(b)-pageTokenMACLen], b[len(b)-pageTokenMACLen:]
	digestEnd := 9 + pageTokenQueryLen
	if !hmac.Equal(mac, p.mac(body)) || !hmac.Equal(body[9:digestEnd], queryDigest(req)) {
		return 0, eventstore.Epoch{}, errBadPageToken
	}
	return binary.BigEndian.Uint64(body[1:9]), eventstore.Epoch(body[digestEnd:]), nil
}

// checkPageEpoch is errStalePageToken when a token was issued in a stream
// of another epoch than the current one.
func checkPageEpoch(issued, current eventstore.Epoch) error {
	if issued != current {
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
