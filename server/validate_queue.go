package server

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
)

// Bounds of the QueueService's requests.
const (
	defaultDeadLetterPage = 50
	maxDeadLetterPage     = 1000
	maxDeadLetterIDs      = 1000
)

func validateConsumerName(name string) error {
	var v violations
	v.id("consumer", name, eventstore.MaxIDLen, true)
	return v.err()
}

func fmtIndex(field string, i int) string { return fmt.Sprintf("%s[%d]", field, i) }

// validateListDeadLetters checks a ListDeadLettersRequest and returns its
// page size and the id after which the page starts.
func validateListDeadLetters(req *ordersv1.ListDeadLettersRequest) (int, uint64, error) {
	var v violations
	v.id("consumer", req.GetConsumer(), eventstore.MaxIDLen, true)
	size := int(req.GetPageSize())
	switch {
	case size == 0:
		size = defaultDeadLetterPage
	case size < 0 || size > maxDeadLetterPage:
		v.add("page_size", "must be between 1 and %d, got %d", maxDeadLetterPage, size)
	}
	var after uint64
	if t := req.GetPageToken(); t != "" {
		var ok bool
		if after, ok = parseDeadLetterPageToken(t, req.GetConsumer()); !ok {
			v.add("page_token", "is not a next_page_token of ListDeadLetters for this consumer")
		}
	}
	return size, after, v.err()
}

// deadLetterPageToken is the page token that continues after id. It names
// its consumer, so a token is never applied to another consumer's list;
// it is no secret (a client may as well pass any id).
func deadLetterPageToken(consumer string, id uint64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("dl1." + consumer + "." + strconv.FormatUint(id, 10)))
}

func parseDeadLetterPageToken(token, consumer string) (uint64, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return 0, false
	}
	rest, ok := strings.CutPrefix(string(raw), "dl1."+consumer+".")
	if !ok {
		return 0, false
	}
	id, err := strconv.ParseUint(rest, 10, 64)
	return id, err == nil && id > 0
}

// validateDeadLetterSelection checks the consumer and ids-or-all of a
// redrive or a purge.
func validateDeadLetterSelection(consumer string, ids []uint64, all bool) error {
	var v violations
	v.id("consumer", consumer, eventstore.MaxIDLen, true)
	switch {
	case all && len(ids) > 0:
		v.add("ids", "cannot be given with all")
	case !all && len(ids) == 0:
		v.add("ids", "name at least one dead letter, or set all")
	case len(ids) > maxDeadLetterIDs:
		v.add("ids", "at most %d ids are allowed per call, got %d", maxDeadLetterIDs, len(ids))
	}
	for i, id := range ids {
		if id == 0 {
			v.add(fmtIndex("ids", i), "must be 1 or more")
		}
	}
	return v.err()
}
