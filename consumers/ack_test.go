package consumers

import (
	"testing"
	"time"
)

// What the acker sends is what credit reads back: each action's body,
// with and without its delay or reason, parses to the same action; an
// empty body is an ack, as JetStream takes it; other bodies are no action.
func TestAckBodiesParseBackToTheirAction(t *testing.T) {
	t.Parallel()
	for _, s := range []Settle{
		{Action: ActionAck},
		{Action: ActionNak},
		{Action: ActionNak, NakDelay: 3 * time.Second},
		{Action: ActionInProgress},
		{Action: ActionTerm},
		{Action: ActionTerm, Reason: "no such sku"},
	} {
		got, ok := actionOf(s.body())
		if !ok || got != s.Action {
			t.Errorf("actionOf(%q) = %v, %v; want %v", s.body(), got, ok, s.Action)
		}
	}
	if got, ok := actionOf(nil); !ok || got != ActionAck {
		t.Errorf("actionOf(empty) = %v, %v; want an ack", got, ok)
	}
	for _, body := range []string{"+NXT", "ACK", "hello"} {
		if got, ok := actionOf([]byte(body)); ok {
			t.Errorf("actionOf(%q) = %v, want no action", body, got)
		}
	}
}
