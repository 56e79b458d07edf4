package server

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ordersd/ordersd/consumers"
	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/deadletters"
	"github.com/ordersd/ordersd/internal/eventstore"
)

// QueueStore is what the QueueService needs of the event store
// (*eventstore.Store): the durable consumers of ORDERS.
type QueueStore interface {
	Durables(ctx context.Context) ([]eventstore.Consumer, error)
	Consumer(ctx context.Context, name string) (eventstore.Consumer, error)
	UpdateConsumer(ctx context.Context, name string, change eventstore.ConsumerChange) (eventstore.Consumer, error)
	DeleteConsumer(ctx context.Context, name string) error
	Repair(ctx context.Context, orderID string, validateOnly bool) (eventstore.RepairReport, error)
}

// DeadLetterStore is what the QueueService needs of the dead letters
// (*deadletters.Store) of the durable consumers.
type DeadLetterStore interface {
	List(ctx context.Context, consumer string, after uint64, limit int) ([]deadletters.Letter, bool, error)
	Counts(ctx context.Context) ([]deadletters.Count, error)
	RedrivePending(ctx context.Context, name string) (uint64, error)
	Redrive(ctx context.Context, consumer string, ids []uint64, all bool) (redriven, notFound []uint64, more bool, err error)
	Purge(ctx context.Context, consumer string, ids []uint64, all bool) (uint64, error)
}

// QueueService implements ordersv1.QueueServiceServer. Who may call it is
// decided by the authentication interceptor ("admin").
type QueueService struct {
	ordersv1.UnimplementedQueueServiceServer
	store   QueueStore
	letters DeadLetterStore
	log     *slog.Logger
}

// NewQueueService returns the QueueService on store and its dead letters.
func NewQueueService(store QueueStore, letters DeadLetterStore, log *slog.Logger) *QueueService {
	return &QueueService{store: store, letters: letters, log: log}
}

// ListConsumers implements ordersv1.QueueServiceServer.
func (q *QueueService) ListConsumers(ctx context.Context, _ *ordersv1.ListConsumersRequest) (*ordersv1.ListConsumersResponse, error) {
	durables, err := q.store.Durables(ctx)
	if err != nil {
		return nil, q.status(ctx, "", err)
	}
	counts, err := q.letters.Counts(ctx)
	if err != nil {
		return nil, q.status(ctx, "", err)
	}
	res := &ordersv1.ListConsumersResponse{}
	for _, c := range durables {
		res.Consumers = append(res.Consumers, consumerOf(c, deadLetterCount(counts, c.Name), 0))
	}
	return res, nil
}

// GetConsumer implements ordersv1.QueueServiceServer.
func (q *QueueService) GetConsumer(ctx context.Context, req *ordersv1.GetConsumerRequest) (*ordersv1.GetConsumerResponse, error) {
	if err := validateConsumerName(req.GetConsumer()); err != nil {
		return nil, err
	}
	cons, err := q.store.Consumer(ctx, req.GetConsumer())
	if err != nil {
		return nil, q.status(ctx, req.GetConsumer(), err)
	}
	c, err := q.describe(ctx, cons)
	if err != nil {
		return nil, q.status(ctx, req.GetConsumer(), err)
	}
	return &ordersv1.GetConsumerResponse{Consumer: c}, nil
}

// describe is the API's view of c with its dead letters and redrives.
func (q *QueueService) describe(ctx context.Context, c eventstore.Consumer) (*ordersv1.Consumer, error) {
	counts, err := q.letters.Counts(ctx)
	if err != nil {
		return nil, err
	}
	redrive, err := q.letters.RedrivePending(ctx, c.Name)
	if err != nil {
		return nil, err
	}
	return consumerOf(c, deadLetterCount(counts, c.Name), redrive), nil
}

// UpdateConsumer implements ordersv1.QueueServiceServer.
func (q *QueueService) UpdateConsumer(ctx context.Context, req *ordersv1.UpdateConsumerRequest) (*ordersv1.UpdateConsumerResponse, error) {
	change, err := consumerChange(req)
	if err != nil {
		return nil, err
	}
	if consumers.Reserved(req.GetConsumer()) {
		return nil, status.Errorf(codes.FailedPrecondition, "consumer %q is ordersd's own: its settings come from ordersd's flags", req.GetConsumer())
	}
	cons, err := q.store.UpdateConsumer(ctx, req.GetConsumer(), change)
	if err != nil {
		return nil, q.status(ctx, req.GetConsumer(), err)
	}
	c, err := q.describe(ctx, cons)
	if err != nil {
		return nil, q.status(ctx, req.GetConsumer(), err)
	}
	return &ordersv1.UpdateConsumerResponse{Consumer: c}, nil
}

// DeleteConsumer implements ordersv1.QueueServiceServer.
func (q *QueueService) DeleteConsumer(ctx context.Context, req *ordersv1.DeleteConsumerRequest) (*ordersv1.DeleteConsumerResponse, error) {
	if err := validateConsumerName(req.GetConsumer()); err != nil {
		return nil, err
	}
	if consumers.Reserved(req.GetConsumer()) {
		return nil, status.Errorf(codes.FailedPrecondition, "consumer %q is ordersd's own: the review worker would create it again (run ordersd with --review=false)", req.GetConsumer())
	}
	if err := q.store.DeleteConsumer(ctx, req.GetConsumer()); err != nil {
		return nil, q.status(ctx, req.GetConsumer(), err)
	}
	return &ordersv1.DeleteConsumerResponse{}, nil
}

// ListDeadLetters implements ordersv1.QueueServiceServer.
func (q *QueueService) ListDeadLetters(ctx context.Context, req *ordersv1.ListDeadLettersRequest) (*ordersv1.ListDeadLettersResponse, error) {
	size, after, err := validateListDeadLetters(req)
	if err != nil {
		return nil, err
	}
	letters, more, err := q.letters.List(ctx, req.GetConsumer(), after, size)
	if err != nil {
		return nil, q.status(ctx, req.GetConsumer(), err)
	}
	res := &ordersv1.ListDeadLettersResponse{}
	for _, l := range letters {
		res.DeadLetters = append(res.DeadLetters, deadLetterOf(l))
	}
	if more && len(letters) > 0 {
		res.NextPageToken = deadLetterPageToken(req.GetConsumer(), letters[len(letters)-1].ID)
	}
	return res, nil
}

// RedriveDeadLetters implements ordersv1.QueueServiceServer.
func (q *QueueService) RedriveDeadLetters(ctx context.Context, req *ordersv1.RedriveDeadLettersRequest) (*ordersv1.RedriveDeadLettersResponse, error) {
	if err := validateDeadLetterSelection(req.GetConsumer(), req.GetIds(), req.GetAll()); err != nil {
		return nil, err
	}
	redriven, notFound, more, err := q.letters.Redrive(ctx, req.GetConsumer(), req.GetIds(), req.GetAll())
	if err != nil {
		return nil, q.status(ctx, req.GetConsumer(), err)
	}
	return &ordersv1.RedriveDeadLettersResponse{Redriven: redriven, NotFound: notFound, More: more}, nil
}

// PurgeDeadLetters implements ordersv1.QueueServiceServer.
func (q *QueueService) PurgeDeadLetters(ctx context.Context, req *ordersv1.PurgeDeadLettersRequest) (*ordersv1.PurgeDeadLettersResponse, error) {
	if err := validateDeadLetterSelection(req.GetConsumer(), req.GetIds(), req.GetAll()); err != nil {
		return nil, err
	}
	n, err := q.letters.Purge(ctx, req.GetConsumer(), req.GetIds(), req.GetAll())
	if err != nil {
		return nil, q.status(ctx, req.GetConsumer(), err)
	}
	return &ordersv1.PurgeDeadLettersResponse{Purged: n}, nil
}

// status maps the errors of consumer administration; the rest goes
// through toStatus, like every other call's.
func (q *QueueService) status(ctx context.Context, consumer string, err error) error {
	switch {
	case ctx.Err() == nil && errors.Is(err, eventstore.ErrConsumerNotFound):
		return status.Errorf(codes.NotFound, "consumer %q not found", consumer)
	case ctx.Err() == nil && errors.Is(err, eventstore.ErrInvalidArgument):
		// JetStream refused the settings together (backoff and max deliveries, say).
		return status.Errorf(codes.FailedPrecondition, "consumer %q: %v", consumer, err)
	}
	return toStatus(ctx, q.log, "", err)
}

// consumerOf is the API's view of a durable consumer.
func consumerOf(cons eventstore.Consumer, deadLetters, redrivePending uint64) *ordersv1.Consumer {
	c := &ordersv1.Consumer{
		Name:              cons.Name,
		Statuses:          eventstore.StatusesOfFilters(cons.Filters),
		FilterSubjects:    cons.Filters,
		AckWait:           durationpb.New(cons.AckWait),
		MaxDeliveries:     int32(min(cons.MaxDeliveries, math.MaxInt32)),
		MaxAckPending:     int32(min(cons.MaxAckPending, math.MaxInt32)),
		Reserved:          consumers.Reserved(cons.Name),
		CreateTime:        timestamppb.New(cons.Created),
		NumPending:        cons.NumPending,
		NumAckPending:     cons.NumAckPending,
		NumRedelivered:    cons.NumRedelivered,
		NumWaiting:        cons.NumWaiting,
		DeadLetterCount:   deadLetters,
		NumRedrivePending: redrivePending,
	}
	for _, d := range cons.Backoff {
		c.Backoff = append(c.Backoff, durationpb.New(d))
	}
	if cons.InactiveThreshold > 0 {
		c.InactiveThreshold = durationpb.New(cons.InactiveThreshold)
	}
	if !cons.LastDelivery.IsZero() {
		c.LastDeliveryTime = timestamppb.New(cons.LastDelivery)
	}
	if !cons.LastAck.IsZero() {
		c.LastAckTime = timestamppb.New(cons.LastAck)
	}
	return c
}

func deadLetterCount(counts []deadletters.Count, consumer string) uint64 {
	var n uint64
	for _, c := range counts {
		if c.Consumer == consumer {
			n += c.Count
		}
	}
	return n
}

// deadLetterOf is the API's view of a dead letter.
func deadLetterOf(l deadletters.Letter) *ordersv1.DeadLetter {
	d := &ordersv1.DeadLetter{
		Id:               l.ID,
		Consumer:         l.Consumer,
		Event:            l.Event,
		EventSequence:    l.EventSeq,
		Reason:           ordersv1.DeadLetterReason_DEAD_LETTER_REASON_MAX_DELIVERIES,
		DeliveryAttempts: l.Deliveries,
		DeadLetterTime:   timestamppb.New(l.Time),
		Redriven:         l.Redriven,
	}
	if l.Reason == deadletters.Terminated {
		d.Reason = ordersv1.DeadLetterReason_DEAD_LETTER_REASON_TERMINATED
		d.TermReason = l.TermReason
	}
	return d
}

// consumerChange checks an UpdateConsumerRequest and returns the change
// it makes to the consumer's settings.
func consumerChange(req *ordersv1.UpdateConsumerRequest) (eventstore.ConsumerChange, error) {
	var v violations
	v.id("consumer", req.GetConsumer(), eventstore.MaxIDLen, true)
	paths := req.GetUpdateMask().GetPaths()
	if len(paths) == 0 {
		v.add("update_mask", "name at least one of ack_wait, max_deliveries, backoff, inactive_threshold")
	}
	named := map[string]bool{}
	for _, p := range paths {
		switch p {
		case "ack_wait", "max_deliveries", "backoff", "inactive_threshold":
			named[p] = true
		default:
			v.add("update_mask", "unknown field %q: ack_wait, max_deliveries, backoff or inactive_threshold", p)
		}
	}
	ackWait := v.duration("ack_wait", req.GetAckWait(), minAckWait, maxAckWait)
	maxDeliveries := req.GetMaxDeliveries()
	if maxDeliveries < 0 || maxDeliveries > maxMaxDeliveries {
		v.add("max_deliveries", "must be between 0 (no limit) and %d, got %d", maxMaxDeliveries, maxDeliveries)
	}
	var backoff []time.Duration
	if len(req.GetBackoff()) > maxBackoffSteps {
		v.add("backoff", "at most %d steps are allowed", maxBackoffSteps)
	}
	for i, d := range req.GetBackoff() {
		backoff = append(backoff, v.duration(fmtIndex("backoff", i), d, minAckWait, maxAckWait))
	}
	if named["ack_wait"] && named["backoff"] && len(backoff) > 0 {
		v.add("ack_wait", "cannot be set with backoff: the first backoff step is the ack wait")
	}
	if named["max_deliveries"] && named["backoff"] && maxDeliveries != 0 && int(maxDeliveries) <= len(backoff) {
		v.add("max_deliveries", "must be greater than the %d backoff steps", len(backoff))
	}
	threshold := v.duration("inactive_threshold", req.GetInactiveThreshold(), time.Second, maxInactiveThreshold)
	if err := v.err(); err != nil {
		return eventstore.ConsumerChange{}, err
	}
	var change eventstore.ConsumerChange
	if named["ack_wait"] {
		ackWait = cmpOr(ackWait, consumers.DefaultAckWait)
		change.AckWait = &ackWait
	}
	if named["max_deliveries"] {
		n := int(maxDeliveries)
		change.MaxDeliveries = &n
	}
	if named["backoff"] {
		change.Backoff = &backoff
	}
	if named["inactive_threshold"] {
		change.InactiveThreshold = &threshold
	}
	return change, nil
}

// maxInactiveThreshold bounds UpdateConsumerRequest.inactive_threshold.
const maxInactiveThreshold = 365 * 24 * time.Hour

func cmpOr(d, fallback time.Duration) time.Duration {
	if d == 0 {
		return fallback
	}
	return d
}
