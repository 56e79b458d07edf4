package consumers

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ordersd/ordersd/internal/eventstore"
	"github.com/ordersd/ordersd/internal/testsupport"
)

// fetchOne fetches one delivery from the durable consumer name.
func (e testEnv) fetchOne(t *testing.T, cons jetstream.Consumer) jetstream.Msg {
	t.Helper()
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for msg := range batch.Messages() {
		return msg
	}
	t.Fatalf("no message: %v", batch.Error())
	return nil
}

func (e testEnv) durable(t *testing.T, name string) jetstream.Consumer {
	t.Helper()
	cons, err := e.js.CreateConsumer(testsupport.Context(t, 5*time.Second), eventstore.StreamName, jetstream.ConsumerConfig{
		Durable: name, AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	return cons
}

// The Acker reports an ack confirmed only once JetStream answered it, and
// the event is then settled in the consumer.
func TestAckerConfirmsWhatJetStreamSettled(t *testing.T) {
	e := newTestEnv(t)
	e.createOrders(t, 1)
	cons := e.durable(t, "q")
	tokens := RandomAckTokens()
	ack, err := tokens.Verify(tokens.Sign(testEpoch, e.fetchOne(t, cons).Reply()))
	if err != nil {
		t.Fatal(err)
	}
	ctx := testsupport.Context(t, 10*time.Second)
	res := NewAcker(e.nc, 5*time.Second).Apply(ctx, []Settle{{Ack: ack, Action: ActionAck}})
	if len(res) != 1 || !res[0].Confirmed || res[0].Err != nil {
		t.Fatalf("Apply = %+v, want one confirmed ack", res)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.NumAckPending != 0 || info.AckFloor.Stream != ack.StreamSeq {
		t.Fatalf("after a confirmed ack: %d pending, ack floor %d; want 0 and %d", info.NumAckPending, info.AckFloor.Stream, ack.StreamSeq)
	}
}

// Tokens of two deliveries of one event, acked in one call, go out as one
// ack and share its confirmation: a replicated consumer would answer only
// one of two acks of the same event.
func TestAckerSendsTwoTokensOfOneEventOnce(t *testing.T) {
	e := newTestEnv(t)
	e.createOrders(t, 1)
	cons := e.durable(t, "q")
	tokens := RandomAckTokens()
	first := e.fetchOne(t, cons)
	if err := first.Nak(); err != nil {
		t.Fatal(err)
	}
	second := e.fetchOne(t, cons)
	if first.Reply() == second.Reply() {
		t.Fatal("the redelivery has the same ack subject")
	}
	var settles []Settle
	for _, m := range []jetstream.Msg{first, second} {
		ack, err := tokens.Verify(tokens.Sign(testEpoch, m.Reply()))
		if err != nil {
			t.Fatal(err)
		}
		settles = append(settles, Settle{Ack: ack, Action: ActionAck})
	}
	if settles[0].Ack.StreamSeq != settles[1].Ack.StreamSeq || settles[0].Ack.Delivered == settles[1].Ack.Delivered {
		t.Fatalf("not two deliveries of one event: %+v", settles)
	}

	// What reaches the ack subjects, from any connection.
	seen := make(chan *nats.Msg, 10)
	watcher := testsupport.Connect(t, e.ns)
	sub, err := watcher.ChanSubscribe("$JS.ACK."+eventstore.StreamName+".q.>", seen)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := watcher.Flush(); err != nil {
		t.Fatal(err)
	}

	ctx := testsupport.Context(t, 10*time.Second)
	res := NewAcker(e.nc, 5*time.Second).Apply(ctx, settles)
	for i, r := range res {
		if !r.Confirmed || r.Err != nil {
			t.Errorf("ack %d: %+v, want confirmed", i, r)
		}
	}
	// A marker published after Apply returned arrives after every ack it sent.
	if err := e.nc.Publish("$JS.ACK."+eventstore.StreamName+".q.marker", nil); err != nil {
		t.Fatal(err)
	}
	acks := 0
	for {
		select {
		case m := <-seen:
			if m.Subject == "$JS.ACK."+eventstore.StreamName+".q.marker" {
				if acks != 1 {
					t.Fatalf("%d acks published for two tokens of one event, want 1", acks)
				}
				return
			}
			acks++
		case <-ctx.Done():
			t.Fatal("the marker did not arrive")
		}
	}
}
