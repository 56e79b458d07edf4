package deadletters

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go/jetstream"
)

// opened are the handles of the streams of dead letters and markers for
// one operation.
type opened struct {
	s       *Store
	dl, red jetstream.Stream
}

// open looks the streams up (provisioning them with ORDERS when
// needed). An operation on many dead letters bounds each step by the
// store's timeout (step), not the whole: the caller's deadline bounds that.
func (s *Store) open(ctx context.Context) (*opened, error) {
	ctx, cancel := s.step(ctx)
	defer cancel()
	if err := s.events.EnsureStreams(ctx); err != nil {
		return nil, err
	}
	if err := s.Off(ctx); err != nil {
		return nil, err
	}
	d := &opened{s: s}
	var err error
	if d.dl, err = s.js.Stream(ctx, Stream); err == nil {
		d.red, err = s.js.Stream(ctx, RedriveStream)
	}
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		// Deleted behind ordersd's back: provision them again on next use.
		s.events.ProvisionAgain()
	}
	if err != nil {
		return nil, s.events.Classify(err)
	}
	return d, nil
}

// step bounds one step of an operation by the store's timeout.
func (s *Store) step(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.opTimeout)
}
