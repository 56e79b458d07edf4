package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// Dead letters are recorded by JetStream itself, not by ordersd: when a
// consumer of ORDERS gives up on an event (its delivery reached the
// consumer's MaxDeliver, or a client terminated it with +TERM), nats-server
// publishes an advisory on $JS.EVENT.ADVISORY.CONSUMER.<kind>.<stream>.<consumer>,
// and the stream ORDERS_DEAD_LETTERS stores those advisories. So a dead
// letter is kept even when no ordersd node runs at that moment: an
// in-process listener would miss it.
//
// A redrive never copies an event onto ORDERS.> (an order's history never
// changes). It stores a small marker, the event's ORDERS sequence, on
// ORDERS_REDRIVE.<consumer> in the stream ORDERS_REDRIVE, and deletes the
// dead letter. Each consumer that has had a redrive gets a second durable
// pull consumer of the same name on ORDERS_REDRIVE, with the same ack wait,
// max deliveries and backoff; ConsumeOrders reads it beside the consumer of
// ORDERS and delivers the marked event from ORDERS with an ack token of the
// marker's delivery, so acking the delivery acks the marker, and attempts
// are counted afresh, once per redrive. Given up on again, the marker's
// own advisory (on ...<kind>.ORDERS_REDRIVE.<consumer>) makes a new dead
// letter, which leads back to the event through the marker.
const (
	// DeadLetterStream stores the advisories of dead letters.
	DeadLetterStream = "ORDERS_DEAD_LETTERS"
	// RedriveStream stores redrive markers, on RedriveStream.<consumer>.
	RedriveStream = "ORDERS_REDRIVE"

	advisoryPrefix        = "$JS.EVENT.ADVISORY.CONSUMER."
	advisoryMaxDeliveries = "MAX_DELIVERIES"
	advisoryTerminated    = "MSG_TERMINATED"
)

// deadLetterSubjects are the advisory subjects ORDERS_DEAD_LETTERS stores:
// both kinds, for the consumers of ORDERS and of ORDERS_REDRIVE.
func deadLetterSubjects() []string {
	var subjects []string
	for _, kind := range []string{advisoryMaxDeliveries, advisoryTerminated} {
		for _, stream := range []string{StreamName, RedriveStream} {
			subjects = append(subjects, advisoryPrefix+kind+"."+stream+".*")
		}
	}
	return subjects
}

// deadLettersOf is the subject filter of one consumer's dead letters: the
// stream holds nothing but the four subjects above, so the wildcards
// select exactly both kinds on both streams.
func deadLettersOf(consumer string) string { return advisoryPrefix + "*.*." + consumer }

// redriveSubject is where the redrive markers of a consumer are stored.
func redriveSubject(consumer string) string { return RedriveStream + "." + consumer }

// provisionDeadLetters creates (or updates) the streams of dead letters
// and redrive markers, beside ORDERS and with its replicas. Both keep
// their messages until they are redriven or purged (dead letters) or
// the consumer is deleted (markers), so nothing is lost by age.
//
// Dead letters are optional: when another stream of the account holds
// subjects they need, ordersd serves everything else, and off says why
// (wrapping ErrDeadLettersOff). A stream that stores every advisory
// ($JS.EVENT.ADVISORY.>, a common monitoring set-up) overlaps the
// dead-letter subjects, and JetStream refuses any two streams whose
// subjects intersect (error 10065); so the dead letters it holds are
// sourced from it (deadLetterStreamConfig). err is for anything else
// (JetStream unreachable, say): provisioning is tried again.
func provisionDeadLetters(ctx context.Context, js jetstream.JetStream, opts StreamOptions) (off, err error) {
	dl, off, err := deadLetterStreamConfig(ctx, js, opts)
	if err != nil || off != nil {
		return off, err
	}
	for _, cfg := range []jetstream.StreamConfig{dl, {
		Name:        RedriveStream,
		Description: "ordersd redrive markers: ORDERS_REDRIVE.<consumer>, payload the ORDERS sequence of a redriven event",
		Subjects:    []string{RedriveStream + ".*"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Replicas:    opts.Replicas,
		Duplicates:  opts.DuplicateWindow,
	}} {
		_, err := js.CreateOrUpdateStream(ctx, cfg)
		if isSubjectOverlap(err) {
			return fmt.Errorf("%w: stream %s cannot be created: %v; give ordersd the subjects %v (see the docs, \"Dead letters\")",
				ErrDeadLettersOff, cfg.Name, err, cfg.Subjects), nil
		}
		if err != nil {
			return nil, fmt.Errorf("provision stream %s: %w", cfg.Name, err)
		}
	}
	return nil, nil
}

// deadLetterStreamConfig is the stream ORDERS_DEAD_LETTERS as it can be in
// this account: each dead-letter subject that no other stream holds is its
// own, and each that another stream's subjects cover ($JS.EVENT.ADVISORY.>
// covers them all) is sourced from that stream, filtered to exactly that
// subject. A subject that other streams overlap without one covering it
// cannot be had either way: off says so.
func deadLetterStreamConfig(ctx context.Context, js jetstream.JetStream, opts StreamOptions) (cfg jetstream.StreamConfig, off, err error) {
	cfg = jetstream.StreamConfig{
		Name:        DeadLetterStream,
		Description: "ordersd dead letters: JetStream's max-deliveries and terminated advisories of the consumers of ORDERS",
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Replicas:    opts.Replicas,
	}
	sources := map[string]*jetstream.StreamSource{}
	for _, subject := range deadLetterSubjects() {
		holders, err := streamsOverlapping(ctx, js, subject)
		if err != nil {
			return cfg, nil, fmt.Errorf("provision stream %s: %w", DeadLetterStream, err)
		}
		if len(holders) == 0 {
			cfg.Subjects = append(cfg.Subjects, subject)
			continue
		}
		from := ""
		for name, subjects := range holders {
			if slices.ContainsFunc(subjects, func(s string) bool { return subjectCovers(s, subject) }) {
				from = name
				break
			}
		}
		if from == "" {
			return cfg, fmt.Errorf("%w: the subject %s is overlapped by the stream(s) %v, none of which holds all of it, and JetStream refuses overlapping streams; "+
				"leave the subjects %v to ordersd, or let one stream hold all of them (see the docs, \"Dead letters\")",
				ErrDeadLettersOff, subject, slices.Sorted(maps.Keys(holders)), deadLetterSubjects()), nil
		}
		src := sources[from]
		if src == nil {
			src = &jetstream.StreamSource{Name: from}
			sources[from] = src
		}
		src.SubjectTransforms = append(src.SubjectTransforms, jetstream.SubjectTransformConfig{Source: subject})
	}
	for _, name := range slices.Sorted(maps.Keys(sources)) {
		cfg.Sources = append(cfg.Sources, sources[name])
	}
	return cfg, nil, nil
}

// streamsOverlapping returns the subjects of each stream but
// ORDERS_DEAD_LETTERS whose subjects intersect subject.
func streamsOverlapping(ctx context.Context, js jetstream.JetStream, subject string) (map[string][]string, error) {
	names := js.StreamNames(ctx, jetstream.WithStreamListSubject(subject))
	holders := map[string][]string{}
	for name := range names.Name() {
		if name == DeadLetterStream {
			continue
		}
		stream, err := js.Stream(ctx, name)
		if err != nil {
			return nil, err
		}
		holders[name] = stream.CachedInfo().Config.Subjects
	}
	return holders, names.Err()
}

// subjectCovers reports whether every subject that matches filter also
// matches pattern (both NATS subjects, with * and > wildcards).
func subjectCovers(pattern, filter string) bool {
	p, f := strings.Split(pattern, "."), strings.Split(filter, ".")
	for i, tok := range p {
		switch {
		case tok == ">":
			return i < len(f)
		case i >= len(f):
			return false
		case tok == "*":
			if f[i] == ">" {
				return false
			}
		case tok != f[i]:
			return false
		}
	}
	return len(p) == len(f)
}

// isSubjectOverlap reports whether JetStream refused a stream because its
// subjects overlap another stream's (error 10065).
func isSubjectOverlap(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jsErrCodeSubjectsOverlap
}

// jsErrCodeSubjectsOverlap is JetStream's error code for subjects that
// overlap another stream's (nats-server JSStreamSubjectOverlapErr).
const jsErrCodeSubjectsOverlap = 10065

// DeadLetterReason is why a consumer gave up on an event.
type DeadLetterReason int

// The reasons, from the advisory's kind.
const (
	MaxDeliveries DeadLetterReason = iota + 1 // MAX_DELIVERIES
	Terminated                                // MSG_TERMINATED: a +TERM, with its reason
)

// DeadLetter is one event one consumer gave up on.
type DeadLetter struct {
	ID         uint64 // its sequence in ORDERS_DEAD_LETTERS
	Consumer   string
	Reason     DeadLetterReason
	TermReason string
	Deliveries uint64
	Time       time.Time
	Redriven   bool   // given up on a redriven delivery
	EventSeq   uint64 // the event's ORDERS sequence; 0 when unknown
	// Event is the event as stored in ORDERS; nil when it cannot be read
	// (not an order event, or its redrive marker is gone).
	Event *ordersv1.OrderEvent
}

// advisory is what the dead-letter advisories carry (nats-server's
// JSConsumerDeliveryExceededAdvisory and JSConsumerDeliveryTerminatedAdvisory).
type advisory struct {
	Time       time.Time `json:"timestamp"`
	Stream     string    `json:"stream"`
	Consumer   string    `json:"consumer"`
	StreamSeq  uint64    `json:"stream_seq"`
	Deliveries uint64    `json:"deliveries"`
	Reason     string    `json:"reason"`
}

// redriveMarker is the payload of a redrive marker.
type redriveMarker struct {
	StreamSeq  uint64 `json:"stream_seq"`  // of the event in ORDERS
	DeadLetter uint64 `json:"dead_letter"` // the id of the dead letter redriven
}

// ParseRedriveMarker returns the ORDERS sequence a redrive marker points at.
func ParseRedriveMarker(data []byte) (uint64, error) {
	var m redriveMarker
	if err := json.Unmarshal(data, &m); err != nil || m.StreamSeq == 0 {
		return 0, fmt.Errorf("%w: not a redrive marker", ErrCorruptEvent)
	}
	return m.StreamSeq, nil
}

// deadLettersRetry is how often, while dead letters are not recorded,
// their streams are provisioned again: a configuration fixed meanwhile
// (the overlapping stream changed) takes effect without a restart.
const deadLettersRetry = 30 * time.Second

// deadLetterState is whether dead letters are recorded, and why not.
type deadLetterState struct {
	mu    sync.Mutex
	off   error     // why not; nil when they are
	tried time.Time // when provisioning was last tried while off
}

// set records the outcome of a provisioning, with a log line when it
// changes.
func (d *deadLetterState) set(log *slog.Logger, off error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case off != nil && (d.off == nil || d.off.Error() != off.Error()):
		log.Warn("dead letters are not recorded; everything else is served", "stream", DeadLetterStream, "reason", off)
	case off == nil && d.off != nil:
		log.Info("dead letters are recorded again", "stream", DeadLetterStream)
	}
	d.off, d.tried = off, time.Now()
}

// DeadLettersOff returns why dead letters are not recorded (wrapping
// ErrDeadLettersOff), nil when they are. While they are not, it provisions
// their streams again every deadLettersRetry.
func (s *Store) DeadLettersOff(ctx context.Context) error {
	s.deadLetters.mu.Lock()
	off, due := s.deadLetters.off, time.Since(s.deadLetters.tried) >= deadLettersRetry
	s.deadLetters.mu.Unlock()
	if off == nil || !due {
		return off
	}
	ctx, cancel := s.step(ctx)
	defer cancel()
	off, err := provisionDeadLetters(ctx, s.js, s.opts)
	if err != nil {
		return s.classify(err)
	}
	s.deadLetters.set(s.log, off)
	return off
}

// deadLetters are the handles of the streams of dead letters and markers
// for one operation.
type deadLetters struct {
	s               *Store
	orders, dl, red jetstream.Stream
}

// openDeadLetters looks the streams up (provisioning them with ORDERS when
// needed). An operation on many dead letters bounds each step by the
// store's timeout (step), not the whole: the caller's deadline bounds that.
func (s *Store) openDeadLetters(ctx context.Context) (*deadLetters, error) {
	ctx, cancel, st, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	if err := s.DeadLettersOff(ctx); err != nil {
		return nil, err
	}
	orders := st.orders
	d := &deadLetters{s: s, orders: orders}
	if d.dl, err = s.js.Stream(ctx, DeadLetterStream); err == nil {
		d.red, err = s.js.Stream(ctx, RedriveStream)
	}
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		// Deleted behind ordersd's back: provision them again on next use.
		s.provisioned.Store(false)
		s.streams.Store(nil)
	}
	if err != nil {
		return nil, s.classify(err)
	}
	return d, nil
}

// step bounds one step of an operation by the store's timeout.
func (s *Store) step(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.opTimeout)
}

// DeadLetters returns up to limit dead letters of consumer with ids
// greater than after, oldest first, and whether more follow.
func (s *Store) DeadLetters(ctx context.Context, consumer string, after uint64, limit int) ([]DeadLetter, bool, error) {
	d, err := s.openDeadLetters(ctx)
	if err != nil {
		return nil, false, err
	}
	var out []DeadLetter
	for seq := after + 1; ; {
		raw, err := d.next(ctx, consumer, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return out, false, nil
		}
		if err != nil {
			return nil, false, s.classify(err)
		}
		if len(out) == limit {
			return out, true, nil
		}
		stepCtx, cancel := s.step(ctx)
		letter, err := d.read(stepCtx, raw)
		cancel()
		if err != nil {
			return nil, false, s.classify(err)
		}
		out = append(out, letter)
		seq = raw.Sequence + 1
	}
}

// next reads the first dead letter of consumer at or after seq.
func (d *deadLetters) next(ctx context.Context, consumer string, seq uint64) (*jetstream.RawStreamMsg, error) {
	ctx, cancel := d.s.step(ctx)
	defer cancel()
	return d.dl.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(deadLettersOf(consumer)))
}

// read decodes a stored advisory and finds its event.
func (d *deadLetters) read(ctx context.Context, raw *jetstream.RawStreamMsg) (DeadLetter, error) {
	var a advisory
	if err := json.Unmarshal(raw.Data, &a); err != nil {
		return DeadLetter{}, fmt.Errorf("%w: dead letter %d: %v", ErrCorruptEvent, raw.Sequence, err)
	}
	letter := DeadLetter{ID: raw.Sequence, Consumer: a.Consumer, Deliveries: a.Deliveries, Time: a.Time,
		TermReason: a.Reason, Redriven: a.Stream == RedriveStream, EventSeq: a.StreamSeq, Reason: MaxDeliveries}
	if strings.HasPrefix(raw.Subject, advisoryPrefix+advisoryTerminated+".") {
		letter.Reason = Terminated
	}
	if letter.Redriven {
		letter.EventSeq = 0
		marker, err := d.red.GetMsg(ctx, a.StreamSeq)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			return letter, nil // the consumer was deleted with its markers
		case err != nil:
			return DeadLetter{}, err
		}
		if letter.EventSeq, err = ParseRedriveMarker(marker.Data); err != nil {
			return letter, nil
		}
	}
	ev, err := d.s.eventAt(ctx, d.orders, letter.EventSeq)
	if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrCorruptEvent) {
		return DeadLetter{}, err
	}
	letter.Event = ev
	return letter, nil
}

// eventAt reads the event at an ORDERS sequence: ErrNotFound when there is
// none, ErrCorruptEvent when it is not an order event.
func (s *Store) eventAt(ctx context.Context, orders jetstream.Stream, seq uint64) (*ordersv1.OrderEvent, error) {
	raw, err := orders.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, fmt.Errorf("%w: no event at sequence %d", ErrNotFound, seq)
	}
	if err != nil {
		return nil, err
	}
	return DecodeEvent(raw.Subject, raw.Header, raw.Data, raw.Sequence, raw.Time)
}

// EventAt reads the event at an ORDERS sequence (for redriven deliveries).
func (s *Store) EventAt(ctx context.Context, seq uint64) (*ordersv1.OrderEvent, error) {
	ctx, cancel, st, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	orders := st.orders
	ev, err := s.eventAt(ctx, orders, seq)
	return ev, s.classify(err)
}

// letterOf reads dead letter id and checks it is one of consumer's.
func (d *deadLetters) letterOf(ctx context.Context, consumer string, id uint64) (*jetstream.RawStreamMsg, error) {
	ctx, cancel := d.s.step(ctx)
	defer cancel()
	raw, err := d.dl.GetMsg(ctx, id)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, ErrDeadLetterNotFound
	}
	if err != nil {
		return nil, err
	}
	if !strings.HasSuffix(raw.Subject, "."+consumer) {
		return nil, ErrDeadLetterNotFound
	}
	return raw, nil
}

// maxRedriveAll bounds the dead letters one RedriveDeadLetters with all
// redrives, so one call does bounded work.
const maxRedriveAll = 10_000

// Redrive hands dead letters of consumer back to it (see the package
// comment on dead letters): the given ids, or with all every one (at most
// maxRedriveAll; more says some remain). It returns the ids redriven and
// those that are not dead letters of the consumer. ErrConsumerNotFound
// when the consumer does not exist.
func (s *Store) Redrive(ctx context.Context, consumer string, ids []uint64, all bool) (redriven, notFound []uint64, more bool, err error) {
	d, err := s.openDeadLetters(ctx)
	if err != nil {
		return nil, nil, false, err
	}
	if err := d.ensureRedriveConsumer(ctx, consumer); err != nil {
		return nil, nil, false, s.classify(err)
	}
	var letters []*jetstream.RawStreamMsg
	if all {
		for seq := uint64(1); ; {
			raw, err := d.next(ctx, consumer, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				break
			}
			if err != nil {
				return nil, nil, false, s.classify(err)
			}
			if len(letters) == maxRedriveAll {
				more = true
				break
			}
			letters = append(letters, raw)
			seq = raw.Sequence + 1
		}
	}
	for _, id := range ids {
		raw, err := d.letterOf(ctx, consumer, id) // bounded by its own step
		if errors.Is(err, ErrDeadLetterNotFound) {
			notFound = append(notFound, id)
			continue
		}
		if err != nil {
			return nil, nil, false, s.classify(err)
		}
		letters = append(letters, raw)
	}
	for _, raw := range letters {
		stepCtx, cancel := s.step(ctx)
		letter, err := d.read(stepCtx, raw)
		if err == nil && letter.EventSeq != 0 {
			err = d.redrive(stepCtx, consumer, letter)
		}
		cancel()
		switch {
		case err != nil:
			// The ones redriven so far stay redriven; a retry goes on.
			return nil, nil, false, s.classify(err)
		case letter.EventSeq == 0:
			notFound = append(notFound, raw.Sequence) // its event cannot be found: purge it
		default:
			redriven = append(redriven, letter.ID)
		}
	}
	return redriven, notFound, more, nil
}

// redrive stores the marker of one dead letter, then deletes the dead
// letter. The marker carries the dead letter's id as Nats-Msg-Id, so a
// redrive retried after the delete failed stores no second marker (within
// the duplicate window).
func (d *deadLetters) redrive(ctx context.Context, consumer string, letter DeadLetter) error {
	data, err := json.Marshal(redriveMarker{StreamSeq: letter.EventSeq, DeadLetter: letter.ID})
	if err != nil {
		return err
	}
	msg := nats.NewMsg(redriveSubject(consumer))
	msg.Data = data
	msg.Header.Set(nats.MsgIdHdr, "redrive-"+strconv.FormatUint(letter.ID, 10))
	if _, err := d.s.js.PublishMsg(ctx, msg); err != nil {
		return err
	}
	if err := d.dl.DeleteMsg(ctx, letter.ID); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return err
	}
	return nil
}

// ensureRedriveConsumer creates the consumer's pull consumer on
// ORDERS_REDRIVE when it has none, with the settings of the consumer of
// ORDERS. It starts at the markers stored from now on: markers of an
// earlier consumer of the name (deleted, or expired while idle) were acked
// or given up on, and must not be delivered again.
func (d *deadLetters) ensureRedriveConsumer(ctx context.Context, consumer string) error {
	ctx, cancel := d.s.step(ctx)
	defer cancel()
	main, err := d.orders.Consumer(ctx, consumer)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("%w: %s", ErrConsumerNotFound, consumer)
	}
	if err != nil {
		return err
	}
	_, err = d.red.Consumer(ctx, consumer)
	if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return err
	}
	cfg := redriveConfig(main.CachedInfo().Config)
	cfg.DeliverPolicy = jetstream.DeliverNewPolicy
	_, err = d.red.CreateConsumer(ctx, cfg)
	if errors.Is(err, jetstream.ErrConsumerExists) { // made meanwhile by another call
		err = nil
	}
	return err
}

// redriveConfig is the redrive consumer of a consumer of ORDERS: same
// name, acks and limits, on the consumer's markers.
func redriveConfig(main jetstream.ConsumerConfig) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:           main.Durable,
		Description:       "ordersd redriven dead letters of " + main.Durable,
		FilterSubject:     redriveSubject(main.Durable),
		AckPolicy:         jetstream.AckExplicitPolicy,
		AckWait:           main.AckWait,
		MaxDeliver:        main.MaxDeliver,
		BackOff:           main.BackOff,
		MaxAckPending:     main.MaxAckPending,
		InactiveThreshold: main.InactiveThreshold,
	}
}

// RedriveConsumer returns the consumer's pull consumer on ORDERS_REDRIVE,
// or ErrConsumerNotFound when it has none (nothing was ever redriven to
// it, or it expired).
func (s *Store) RedriveConsumer(ctx context.Context, consumer string) (jetstream.Consumer, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opTimeout)
	defer cancel()
	cons, err := s.js.Consumer(ctx, RedriveStream, consumer)
	if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrConsumerNotFound, consumer)
	}
	return cons, s.classify(err)
}

// PurgeDeadLetters removes dead letters of consumer: the given ids (those
// that are not its dead letters are skipped), or with all every one. It
// returns how many it removed.
func (s *Store) PurgeDeadLetters(ctx context.Context, consumer string, ids []uint64, all bool) (uint64, error) {
	d, err := s.openDeadLetters(ctx)
	if err != nil {
		return 0, err
	}
	if all {
		ctx, cancel := s.step(ctx)
		defer cancel()
		before, err := countSubjects(ctx, d.dl, deadLettersOf(consumer))
		if err != nil {
			return 0, s.classify(err)
		}
		err = d.dl.Purge(ctx, jetstream.WithPurgeSubject(deadLettersOf(consumer)))
		return before, s.classify(err)
	}
	var purged uint64
	for _, id := range ids {
		if _, err := d.letterOf(ctx, consumer, id); errors.Is(err, ErrDeadLetterNotFound) {
			continue
		} else if err != nil {
			return purged, s.classify(err)
		}
		stepCtx, cancel := s.step(ctx)
		err := d.dl.DeleteMsg(stepCtx, id)
		cancel()
		if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return purged, s.classify(err)
		}
		purged++
	}
	return purged, nil
}

// DeadLetterCount is how many dead letters of one consumer are stored for
// one reason.
type DeadLetterCount struct {
	Consumer string
	Reason   DeadLetterReason
	Count    uint64
}

// DeadLetterCounts counts the stored dead letters per consumer and reason
// (redriven ones with the others), from the stream's per-subject counts:
// no message is read. While dead letters are not recorded none is stored,
// and it returns none: the consumers are described all the same.
func (s *Store) DeadLetterCounts(ctx context.Context) ([]DeadLetterCount, error) {
	d, err := s.openDeadLetters(ctx)
	if errors.Is(err, ErrDeadLettersOff) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.step(ctx)
	defer cancel()
	info, err := d.dl.Info(ctx, jetstream.WithSubjectFilter(advisoryPrefix+">"))
	if err != nil {
		return nil, s.classify(err)
	}
	type key struct {
		consumer string
		reason   DeadLetterReason
	}
	counts := map[key]uint64{}
	for subject, n := range info.State.Subjects {
		tokens := strings.Split(strings.TrimPrefix(subject, advisoryPrefix), ".")
		if len(tokens) != 3 {
			continue
		}
		k := key{consumer: tokens[2], reason: MaxDeliveries}
		if tokens[0] == advisoryTerminated {
			k.reason = Terminated
		}
		counts[k] += n
	}
	out := make([]DeadLetterCount, 0, len(counts))
	for k, n := range counts {
		out = append(out, DeadLetterCount{Consumer: k.consumer, Reason: k.reason, Count: n})
	}
	return out, nil
}

// countSubjects counts the messages of a stream on a subject filter.
func countSubjects(ctx context.Context, stream jetstream.Stream, filter string) (uint64, error) {
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return 0, err
	}
	var total uint64
	for _, n := range info.State.Subjects {
		total += n
	}
	return total, nil
}
