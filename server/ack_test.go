package server_test

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ordersd/ordersd/consumers"
	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
)

// testEpoch is an epoch of no stream of the tests: tokens signed for it
// are refused for their epoch once their signature and subject pass.
var testEpoch = eventstore.Epoch{0xe}

// Tokens that ordersd did not issue are refused before anything is
// published: no ack, and above all no publish on a subject of the
// attacker's choosing.
func TestForgedTruncatedAndForeignAckTokensAreRefused(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	n.create(t)
	stream, _ := n.consume(t, createdQueue("guarded"))
	genuine := nextEvent(t, stream).GetAckToken()

	raw, err := base64.RawURLEncoding.DecodeString(genuine)
	if err != nil {
		t.Fatal(err)
	}
	flipped := append([]byte(nil), raw...)
	flipped[1+eventstore.EpochLen+4] ^= 0x01 // one bit of the signature
	retargeted := append([]byte(nil), raw...)
	retargeted = append(retargeted[:len(retargeted)-1], '9') // one byte of the subject
	foreignKey, _ := consumers.NewAckTokens([]byte("another-deployment-key-0123456789abc"))
	ourKey, _ := consumers.NewAckTokens([]byte(testAckKey))
	delivery, err := ourKey.Verify(genuine)
	if err != nil {
		t.Fatal(err)
	}
	earlierStream := delivery.Epoch
	earlierStream[0] ^= 0xff

	// Watch everything a bad ack could publish to.
	spy, err := n.js.Conn().SubscribeSync(">")
	if err != nil {
		t.Fatal(err)
	}
	defer spy.Unsubscribe()

	for name, c := range map[string]struct {
		token string
		code  codes.Code
	}{
		"empty":                           {"", codes.InvalidArgument},
		"not base64":                      {"%%%not-a-token%%%", codes.InvalidArgument},
		"truncated":                       {genuine[:20], codes.InvalidArgument},
		"truncated to the signature":      {base64.RawURLEncoding.EncodeToString(raw[:33]), codes.InvalidArgument},
		"signature bit flipped":           {base64.RawURLEncoding.EncodeToString(flipped), codes.PermissionDenied},
		"subject altered":                 {base64.RawURLEncoding.EncodeToString(retargeted), codes.PermissionDenied},
		"signed by another deployment":    {foreignKey.Sign(testEpoch, "$JS.ACK.ORDERS.guarded.1.1.1.1.0"), codes.PermissionDenied},
		"another deployment, API subject": {foreignKey.Sign(testEpoch, "$JS.API.STREAM.DELETE.ORDERS"), codes.PermissionDenied},
		"our key, not an ack subject":     {ourKey.Sign(testEpoch, "$JS.API.STREAM.DELETE.ORDERS"), codes.InvalidArgument},
		"our key, another stream":         {ourKey.Sign(testEpoch, "$JS.ACK.OTHER.guarded.1.1.1.1.0"), codes.InvalidArgument},
		"our key, wildcard":               {ourKey.Sign(testEpoch, "$JS.ACK.ORDERS.*.1.1.1.1.0"), codes.InvalidArgument},
		"our key, an earlier stream":      {ourKey.Sign(earlierStream, delivery.Subject), codes.InvalidArgument},
	} {
		t.Run(name, func(t *testing.T) {
			// The bad token rides along with the genuine one: the whole call is refused.
			_, err := n.client.AckOrders(testCtx(t), &ordersv1.AckOrdersRequest{Acks: []*ordersv1.Ack{
				{AckToken: genuine, Action: ordersv1.AckAction_ACK_ACTION_ACK},
				{AckToken: c.token, Action: ordersv1.AckAction_ACK_ACTION_TERM},
			}})
			if status.Code(err) != c.code {
				t.Fatalf("got %v, want %v", err, c.code)
			}
		})
	}
	// Nothing reached NATS: no ack (the genuine one was held back too), no API call.
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		m, err := spy.NextMsg(50 * time.Millisecond)
		if err == nats.ErrTimeout {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(m.Subject, "$JS.ACK.") || strings.Contains(m.Subject, "DELETE") || strings.Contains(m.Subject, "PURGE") {
			t.Errorf("a refused ack published on %s", m.Subject)
		}
	}
	if _, err := n.js.Stream(testCtx(t), eventstore.StreamName); err != nil {
		t.Fatalf("stream after the attempts: %v", err)
	}
	if info := n.consumerInfo(t, "guarded"); info.NumAckPending != 1 {
		t.Fatalf("%d events unacked, want the one still held", info.NumAckPending)
	}
	// The genuine token still works, on its own.
	n.ack(t, ordersv1.AckAction_ACK_ACTION_ACK, genuine)
}

func TestAckRequestValidation(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	ourKey, _ := consumers.NewAckTokens([]byte(testAckKey))
	token := ourKey.Sign(testEpoch, "$JS.ACK.ORDERS.c.1.1.1.1.0")
	many := make([]*ordersv1.Ack, 1001)
	for i := range many {
		many[i] = &ordersv1.Ack{AckToken: token, Action: ordersv1.AckAction_ACK_ACTION_ACK}
	}
	for name, c := range map[string]struct {
		acks  []*ordersv1.Ack
		field string
	}{
		"no acks":                {nil, "acks"},
		"too many acks":          {many, "acks"},
		"no action":              {[]*ordersv1.Ack{{AckToken: token}}, "acks[0].action"},
		"unknown action":         {[]*ordersv1.Ack{{AckToken: token, Action: 42}}, "acks[0].action"},
		"negative nak delay":     {[]*ordersv1.Ack{{AckToken: token, Action: ordersv1.AckAction_ACK_ACTION_NAK, NakDelay: dur(-time.Second)}}, "acks[0].nak_delay"},
		"nak delay on an ack":    {[]*ordersv1.Ack{{AckToken: token, Action: ordersv1.AckAction_ACK_ACTION_ACK, NakDelay: dur(time.Second)}}, "acks[0].nak_delay"},
		"reason with a newline":  {[]*ordersv1.Ack{{AckToken: token, Action: ordersv1.AckAction_ACK_ACTION_TERM, Reason: "a\nb"}}, "acks[0].reason"},
		"reason on a nak":        {[]*ordersv1.Ack{{AckToken: token, Action: ordersv1.AckAction_ACK_ACTION_NAK, Reason: "why"}}, "acks[0].reason"},
		"second token malformed": {[]*ordersv1.Ack{{AckToken: token, Action: 1}, {AckToken: "x", Action: 1}}, "acks[1].ack_token"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := n.client.AckOrders(testCtx(t), &ordersv1.AckOrdersRequest{Acks: c.acks})
			assertFieldViolation(t, err, c.field)
		})
	}
}
