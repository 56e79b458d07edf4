package consumers

import (
	"context"
	"testing"
	"time"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
)

// When nats.go gives up on the monitor's ordered consumer (recreating it
// failed with an error it does not retry), watchers do not go on with
// heartbeats and no events: they catch up from the stream, and the
// monitor subscribes again, with no event missed or repeated.
func TestWatchersSurviveTheMonitorsSubscriptionEnding(t *testing.T) {
	env := newTestEnv(t)
	monitor := NewMonitor(env.nc, eventstore.Layout{}, eventstore.DefaultOpTimeout, env.log, nil)
	defer monitor.Close()
	watcher := NewWatcher(monitor, env.store, NewResumePositions(RandomAckTokens()))
	env.createOrders(t, 3)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	updates := make(chan WatchUpdate, 100)
	done := make(chan error, 1)
	go func() {
		done <- watcher.Watch(ctx, WatchSpec{ReplayAll: true, Heartbeat: time.Second}, func(u WatchUpdate) error {
			updates <- u
			return nil
		})
	}()
	var last uint64
	next := func() *ordersv1.OrderEvent {
		t.Helper()
		for {
			select {
			case u := <-updates:
				if u.Event != nil {
					if u.Event.GetSequence() != last+1 {
						t.Fatalf("got sequence %d after %d", u.Event.GetSequence(), last)
					}
					last = u.Event.GetSequence()
					return u.Event
				}
			case err := <-done:
				t.Fatalf("the watch ended: %v", err)
			case <-time.After(10 * time.Second):
				t.Fatalf("no event after sequence %d within 10s", last)
			}
		}
	}
	for range 3 {
		next()
	}

	// What nats.go does when it gives up on an ordered consumer.
	monitor.mu.Lock()
	sub := monitor.subs[0]
	monitor.mu.Unlock()
	if err := sub.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	env.createOrders(t, 3)
	for range 3 {
		next()
	}
	monitor.mu.Lock()
	resubscribed := monitor.subs != nil && monitor.subs[0] != sub && monitor.subs[0].IsValid()
	monitor.mu.Unlock()
	if !resubscribed {
		t.Fatal("the monitor did not subscribe again")
	}
	env.createOrders(t, 2)
	for range 2 {
		next()
	}
	cancel()
	<-done
}
