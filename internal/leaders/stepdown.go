package leaders

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// stepDownSubject is the JetStream API that makes a stream's leader step
// down, to the server its request prefers when that one is current.
const stepDownSubject = jetstream.DefaultAPIPrefix + "STREAM.LEADER.STEPDOWN."

// stepDownRequest is nats-server's JSApiLeaderStepdownRequest: the
// placement names the preferred server.
type stepDownRequest struct {
	Placement struct {
		Preferred string `json:"preferred"`
	} `json:"placement"`
}

// stepDownResponse is nats-server's JSApiStreamLeaderStepDownResponse.
type stepDownResponse struct {
	Success bool `json:"success"`
	Error   *struct {
		Code        int    `json:"code"`
		ErrCode     int    `json:"err_code"`
		Description string `json:"description"`
	} `json:"error"`
}

// ErrStepDownRefused is wrapped by the error of a stepdown that JetStream
// answered with an error (the preferred server is not current, the stream
// has no leader, the user may not ask).
var ErrStepDownRefused = errors.New("leader stepdown refused")

// StepDown asks the leader of m.Stream to hand over to m.To. Success
// means the leader stepped down; whether m.To won the election the next
// stream info tells (the leader picks another current peer when m.To is
// not one).
func StepDown(ctx context.Context, nc *nats.Conn, m Move) error {
	var req stepDownRequest
	req.Placement.Preferred = m.To
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	msg, err := nc.RequestWithContext(ctx, stepDownSubject+m.Stream, body)
	if err != nil {
		return fmt.Errorf("leader stepdown of %s to %s: %w", m.Stream, m.To, err)
	}
	var resp stepDownResponse
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return fmt.Errorf("leader stepdown of %s to %s: unreadable answer %q: %w", m.Stream, m.To, msg.Data, err)
	}
	if resp.Error != nil {
		return fmt.Errorf("%w: stream %s to %s: %s (JetStream error %d)", ErrStepDownRefused, m.Stream, m.To, resp.Error.Description, resp.Error.ErrCode)
	}
	if !resp.Success {
		return fmt.Errorf("%w: stream %s to %s: no success in %q", ErrStepDownRefused, m.Stream, m.To, msg.Data)
	}
	return nil
}
