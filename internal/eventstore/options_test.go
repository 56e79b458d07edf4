package eventstore

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// New refuses options out of range with ErrInvalidOption, and fills in the
// documented defaults for zero fields.
func TestNewValidatesOptions(t *testing.T) {
	t.Parallel()
	js, _ := startJetStream(t)
	for _, tc := range []struct {
		name string
		js   jetstream.JetStream
		o    Options
	}{
		{"no JetStream context is refused", nil, Options{}},
		{"negative replicas are refused", js, Options{Stream: StreamOptions{Replicas: -1}}},
		{"more than five replicas are refused", js, Options{Stream: StreamOptions{Replicas: 6}}},
		{"a negative duplicate window is refused", js, Options{Stream: StreamOptions{DuplicateWindow: -time.Second}}},
		{"a negative operation timeout is refused", js, Options{OpTimeout: -time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if s, err := New(tc.js, tc.o); !errors.Is(err, ErrInvalidOption) {
				t.Fatalf("New = %v, %v; want ErrInvalidOption", s, err)
			}
		})
	}
	s, err := New(js, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s.opts != DefaultStreamOptions || s.opTimeout != DefaultOpTimeout || s.log == nil {
		t.Fatalf("zero options became stream %+v, timeout %s, logger %v; want the defaults", s.opts, s.opTimeout, s.log)
	}
}
