package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// syncBuffer is a log destination safe for the goroutines of a test.
type syncBuffer struct {
	mu  sync.Mutex // protects buf
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines are the JSON log lines written so far.
func (b *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// reconnect, the loop of Consume and Watch, reopens a stream after each
// break that another node may not give, logging each pause under one key
// with what identifies the stream, and stops at a final or permanent
// error, or when its context ends (nil then). A stream that worked resets
// the pauses.
func TestReconnectReopensUntilAFinalError(t *testing.T) {
	var logs syncBuffer
	c := &Client{log: slog.New(slog.NewJSONHandler(&logs, nil))}
	errHandler := errors.New("the handler gave up")
	unavailable := status.Error(codes.Unavailable, "node gone")
	ctx := context.Background()

	// Two breaks, one stream that works, one more break, then the handler fails.
	calls := 0
	err := c.reconnect(ctx, "watch", func() []any { return []any{"after_sequence", calls} }, func(_ context.Context, pause *backoff) error {
		calls++
		switch calls {
		case 3:
			pause.reset() // a response arrived
			return unavailable
		case 5:
			return finalError{errHandler}
		}
		return unavailable
	})
	if !errors.Is(err, errHandler) || calls != 5 {
		t.Fatalf("reconnect = %v after %d streams; want the handler's error after 5", err, calls)
	}
	lines := logs.lines(t)
	if len(lines) != 4 {
		t.Fatalf("%d log lines, want one per break (4): %v", len(lines), lines)
	}
	for i, l := range lines {
		nanos, ok := l["pause"].(float64) // slog's JSON handler writes a duration in nanoseconds
		pause := time.Duration(nanos)
		if l["msg"] != "watch stream broke; reopening" || l["err"] == nil || !ok || l["after_sequence"] != float64(i+1) {
			t.Errorf("log line %d: %v; want the message, the error, the pause and the stream's attributes", i, l)
		}
		// Pauses grow from reconnectMin; the stream that worked (the third) starts them again.
		step := []time.Duration{reconnectMin, 2 * reconnectMin, reconnectMin, 2 * reconnectMin}[i]
		if pause < step/2 || pause > step {
			t.Errorf("pause %d: %v, want %v to %v", i, pause, step/2, step)
		}
	}

	// An error any node would give ends it at once.
	calls = 0
	denied := status.Error(codes.PermissionDenied, "no")
	if err := c.reconnect(ctx, "consume", func() []any { return nil }, func(context.Context, *backoff) error { calls++; return denied }); err != denied || calls != 1 {
		t.Errorf("reconnect on PermissionDenied = %v after %d streams; want it at once", err, calls)
	}

	// Its context ending, in a stream or in a pause, ends it with nil.
	cancelled, cancel := context.WithCancel(ctx)
	calls = 0
	err = c.reconnect(cancelled, "consume", func() []any { return nil }, func(context.Context, *backoff) error {
		calls++
		if calls == 2 {
			cancel()
		}
		return unavailable
	})
	if err != nil || calls != 2 {
		t.Errorf("reconnect with its context cancelled = %v after %d streams; want nil after 2", err, calls)
	}
}
