package deadletters

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ordersd/ordersd/internal/eventstore"
)

// provision creates (or updates) the streams of dead letters and redrive
// markers, beside ORDERS and with its replicas. Both keep
// their messages until they are redriven or purged (dead letters) or
// the consumer is deleted (markers), so nothing is lost by age.
//
// Dead letters are optional: when another stream of the account holds
// subjects they need, ordersd serves everything else, and off says why
// (wrapping ErrOff). A stream that stores every advisory
// ($JS.EVENT.ADVISORY.>, a common monitoring set-up) overlaps the
// dead-letter subjects, and JetStream refuses any two streams whose
// subjects intersect (error 10065); so the dead letters it holds are
// sourced from it (streamConfig). err is for anything else
// (JetStream unreachable, say): provisioning is tried again.
func provision(ctx context.Context, js jetstream.JetStream, l eventstore.Layout, opts eventstore.StreamOptions) (off, err error) {
	dl, off, err := streamConfig(ctx, js, l, opts)
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
				ErrOff, cfg.Name, err, cfg.Subjects), nil
		}
		if err != nil {
			return nil, fmt.Errorf("provision stream %s: %w", cfg.Name, err)
		}
	}
	return nil, nil
}

// streamConfig is the stream ORDERS_DEAD_LETTERS of layout l as it can be
// in this account (its subjects follow the layout, so a stream of another
// layout's subjects is updated to l's): each dead-letter subject that no other stream holds is its
// own, and each that another stream's subjects cover ($JS.EVENT.ADVISORY.>
// covers them all) is sourced from that stream, filtered to exactly that
// subject. A subject that other streams overlap without one covering it
// cannot be had either way: off says so.
func streamConfig(ctx context.Context, js jetstream.JetStream, l eventstore.Layout, opts eventstore.StreamOptions) (cfg jetstream.StreamConfig, off, err error) {
	cfg = jetstream.StreamConfig{
		Name:        Stream,
		Description: "ordersd dead letters: JetStream's max-deliveries and terminated advisories of the consumers of ORDERS",
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Replicas:    opts.Replicas,
	}
	sources := map[string]*jetstream.StreamSource{}
	for _, subject := range deadLetterSubjects(l) {
		holders, err := streamsOverlapping(ctx, js, subject)
		if err != nil {
			return cfg, nil, fmt.Errorf("provision stream %s: %w", Stream, err)
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
				ErrOff, subject, slices.Sorted(maps.Keys(holders)), deadLetterSubjects(l)), nil
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
		if name == Stream {
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
