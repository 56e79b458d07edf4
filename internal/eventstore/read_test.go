package eventstore

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/testsupport"
)

// Messages that the read's consumer delivered but the read never got (a
// fetch that gave up while the server was still sending its batch; here
// another fetch takes them, as the server counts those the same way) are
// read again: Read hands over every event, in order, without a gap.
func TestReadGoesOnAfterDeliveriesItNeverGot(t *testing.T) {
	js, log := startJetStream(t)
	store, err := New(js, Options{OpTimeout: 5 * time.Second, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testsupport.Context(t, time.Minute)
	if err := store.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	const events, taken = readBatch + 44, 10 // past the read's first fetch
	for range events {
		if _, err := store.Create(ctx, NewOrder{CustomerID: "c", CurrencyCode: "EUR",
			Items: []*ordersv1.LineItem{{Sku: "s", Quantity: 1, UnitPriceMinor: 1}}}); err != nil {
			t.Fatal(err)
		}
	}

	first, resume := make(chan struct{}), make(chan struct{})
	var got []uint64
	done := make(chan error, 1)
	go func() {
		_, err := store.Read(ctx, ReadRequest{}, func(ev *ordersv1.OrderEvent) error {
			if len(got) == 0 {
				close(first)
				<-resume // the first fetch has its batch; the consumer's next deliveries go elsewhere meanwhile
			}
			got = append(got, ev.GetSequence())
			return nil
		})
		done <- err
	}()
	<-first
	stream, err := js.Stream(ctx, StreamName)
	if err != nil {
		t.Fatal(err)
	}
	names := stream.ConsumerNames(ctx)
	var readers []string
	for name := range names.Name() {
		if c, err := stream.Consumer(ctx, name); err == nil && c.CachedInfo().Config.Description == "ordersd read" {
			readers = append(readers, name)
		}
	}
	if len(readers) != 1 {
		t.Fatalf("read consumers %v, want one", readers)
	}
	reader, err := stream.Consumer(ctx, readers[0])
	if err != nil {
		t.Fatal(err)
	}
	batch, err := reader.Fetch(taken, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for range batch.Messages() {
		n++
	}
	if n != taken {
		t.Fatalf("took %d deliveries of the read's consumer, want %d (%v)", n, taken, batch.Error())
	}
	close(resume)
	if err := <-done; err != nil {
		t.Fatalf("read: %v", err)
	}
	if len(got) != events {
		t.Fatalf("read %d events, want %d", len(got), events)
	}
	for i := 1; i < len(got); i++ {
		if got[i] != got[i-1]+1 {
			t.Fatalf("read event %d after %d", got[i], got[i-1])
		}
	}
}
