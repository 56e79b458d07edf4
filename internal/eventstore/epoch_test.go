package eventstore

import (
	"context"
	"testing"
	"time"
)

// Every node that serves one stream ORDERS finds the same epoch, whether
// it created the stream, updated it at start-up or looked it up later; a
// stream deleted and created again has another.
func TestEpochIsTheStreamsOnEveryNode(t *testing.T) {
	js, log := startJetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	epochOfNewStore := func() Epoch {
		t.Helper()
		store, err := New(js, Options{Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		e, err := store.Epoch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	creator := epochOfNewStore()              // creates the stream
	updater := epochOfNewStore()              // updates it to the same settings
	stream, err := js.Stream(ctx, StreamName) // what a later lookup finds
	if err != nil {
		t.Fatal(err)
	}
	if looked := epochOf(stream.CachedInfo()); creator != updater || creator != looked || creator == (Epoch{}) {
		t.Fatalf("epochs of one stream: created %x, updated %x, looked up %x", creator, updater, looked)
	}
	if err := js.DeleteStream(ctx, StreamName); err != nil {
		t.Fatal(err)
	}
	if again := epochOfNewStore(); again == creator {
		t.Fatalf("the stream created again has the old epoch %x", again)
	}
}
