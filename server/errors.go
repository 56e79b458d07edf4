package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ordersd/ordersd/consumers"
	"github.com/ordersd/ordersd/internal/deadletters"
	"github.com/ordersd/ordersd/internal/eventstore"
)

// permissionDenied is the status of a request this deployment refuses to trust.

// ShuttingDownMessage is the UNAVAILABLE message of the calls a node ends
// as it shuts down: reconnect (to another node), and how a watch resumes.
const ShuttingDownMessage = "ordersd is shutting down; reconnect (a watch resumes after the resume_position of the last response it handled)"

func permissionDenied(msg string) error {
	return status.Error(codes.PermissionDenied, msg)
}

// toStatus maps an error of the event store to the gRPC status the client
// gets. It is the only place that does: every code a client can see is
// chosen here. Messages name only what the client sent or can act on;
// details of the failure (NATS errors, corrupt data) go to the log.
func toStatus(ctx context.Context, log *slog.Logger, orderID string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err // already a status (validation, a failed Send)
	}
	var (
		conflict   *eventstore.ConflictError
		transition *eventstore.TransitionError
		tooSlow    *consumers.TooSlowError
	)
	switch {
	case errors.Is(context.Cause(ctx), errShuttingDown):
		return status.Error(codes.Unavailable, ShuttingDownMessage)
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded before JetStream answered; for a write the outcome is unknown: retry with the same request_id")
	case errors.Is(ctx.Err(), context.Canceled):
		return status.Error(codes.Canceled, "call cancelled")
	case errors.Is(err, eventstore.ErrNotFound):
		return status.Errorf(codes.NotFound, "order %q not found", orderID)
	case errors.Is(err, eventstore.ErrAlreadyExists):
		return status.Errorf(codes.AlreadyExists, "order %q already exists (created by another request)", orderID)
	case errors.As(err, &conflict):
		return status.Errorf(codes.Aborted, "order %q: %s; read it again and retry", orderID, conflict.Error())
	case errors.Is(err, eventstore.ErrConflict):
		return status.Errorf(codes.Aborted, "order %q changed concurrently; read it again and retry", orderID)
	case errors.As(err, &transition):
		st := status.Newf(codes.FailedPrecondition, "order %q: %s", orderID, transition.Error())
		if d, derr := st.WithDetails(&errdetails.PreconditionFailure{Violations: []*errdetails.PreconditionFailure_Violation{{
			Type: "STATUS", Subject: "orders/" + orderID, Description: transition.Error(),
		}}}); derr == nil {
			st = d
		}
		return st.Err()
	case errors.As(err, &tooSlow):
		return watcherTooSlow(tooSlow)
	case errors.Is(err, consumers.ErrBadPosition), errors.Is(err, consumers.ErrStalePosition), errors.Is(err, consumers.ErrForeignPosition):
		return invalidArgument("resume_after "+err.Error(), []*errdetails.BadRequest_FieldViolation{{Field: "resume_after", Description: err.Error()}})
	case errors.Is(err, consumers.ErrStartSequencePartitioned):
		return invalidArgument(err.Error(), []*errdetails.BadRequest_FieldViolation{{Field: "start_sequence", Description: err.Error()}})
	case errors.Is(err, eventstore.ErrRequestIDReused):
		return invalidArgument("request_id was already used for a different request", []*errdetails.BadRequest_FieldViolation{{
			Field: "request_id", Description: "already used for a different request; use a new id for each distinct request",
		}})
	case errors.Is(err, eventstore.ErrTooManyConsumers):
		log.WarnContext(ctx, "durable consumer refused", "err", err)
		return status.Error(codes.ResourceExhausted, "the most durable consumers allowed exist already (ordersd --max-consumers-durable); reuse one, or have an admin delete unused ones (QueueService.DeleteConsumer)")
	case errors.Is(err, consumers.ErrConsumerMismatch):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, deadletters.ErrOff):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, eventstore.ErrInvalidArgument):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, eventstore.ErrUnavailable):
		log.WarnContext(ctx, "jetstream unavailable", "order_id", orderID, "err", err)
		return status.Error(codes.Unavailable, "JetStream is unavailable; retry later (writes with the same request_id)")
	case errors.Is(err, eventstore.ErrResourceExhausted):
		log.WarnContext(ctx, "jetstream refused a write for lack of resources", "order_id", orderID, "err", err)
		return status.Error(codes.ResourceExhausted, "JetStream cannot take the write now (storage full, or too many writes waiting for acks); retry with backoff")
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "call cancelled")
	case eventstore.AsUnreadable(err) != nil:
		// Logged once per message where it was met (eventstore.Unreadables).
		return unreadableStatus(eventstore.AsUnreadable(err))
	case errors.Is(err, eventstore.ErrCorruptEvent):
		log.ErrorContext(ctx, "unreadable stored data", "order_id", orderID, "err", err)
		return status.Errorf(codes.DataLoss, "stored data of order %q is unreadable", orderID)
	default:
		log.ErrorContext(ctx, "unexpected error", "order_id", orderID, "err", err)
		return status.Error(codes.Internal, "internal error")
	}
}

// unreadableStatus is DATA_LOSS for a read that met a message that is not
// an order event: it names the order (from the message's subject, never
// the caller's customer), the sequence and why, and what repairs it, with
// the same facts in a google.rpc.ErrorInfo.
func unreadableStatus(u *eventstore.UnreadableError) error {
	what := "a stored message"
	if u.OrderID != "" {
		what = fmt.Sprintf("order %q cannot be read: its last stored message", u.OrderID)
	}
	st := status.Newf(codes.DataLoss, "%s, sequence %d of stream %s (subject %s), is not an order event: %s; "+
		"QueueService.RepairOrder (admin) shows it and restores the order's last good state",
		what, u.Sequence, u.Stream, u.Subject, u.Reason)
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: "UNREADABLE_EVENT", Domain: "ordersd", Metadata: map[string]string{
		"stream": u.Stream, "sequence": strconv.FormatUint(u.Sequence, 10), "subject": u.Subject, "order_id": u.OrderID,
	}}); err == nil {
		st = d
	}
	return st.Err()
}

// watcherTooSlow is the end of a watch that fell too far behind the live
// events: RESOURCE_EXHAUSTED, with the resume position and start_sequence
// that resume it in the message and, for programs, in an ErrorInfo
// (reason WATCHER_TOO_SLOW, metadata resume_position and start_sequence).
// In layout 3 there is no start_sequence (ErrStartSequencePartitioned):
// only the resume position.
func watcherTooSlow(e *consumers.TooSlowError) error {
	st := status.New(codes.ResourceExhausted, e.Error())
	metadata := map[string]string{"resume_position": e.ResumePosition}
	if e.Resume != 0 {
		metadata["start_sequence"] = strconv.FormatUint(e.Resume, 10)
	}
	if d, err := st.WithDetails(&errdetails.ErrorInfo{
		Reason: "WATCHER_TOO_SLOW", Domain: "ordersd", Metadata: metadata,
	}); err == nil {
		st = d
	}
	return st.Err()
}
