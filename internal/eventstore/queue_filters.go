package eventstore

import (
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// A work queue's filters are written once, in layout 2's terms
// (ORDERS.<event>.<customer_id>.<order_id>, as FilterSubjects gives them;
// none: every event), whatever the layout: in layout 3 the queue is one
// consumer per partition, and each of them filters the same events under
// its partition's prefix. These two functions are the only translation
// between the two, so what a queue's clients and administrators see does
// not depend on the layout.

// queueFilters are the filters of a queue's consumer on p, from the
// queue's filters.
func (p Partition) queueFilters(filters []string) []string {
	if p.Of == 0 {
		return filters
	}
	if len(filters) == 0 {
		return []string{p.Subjects()} // the events, not the claims beside them
	}
	out := make([]string, len(filters))
	for i, f := range filters {
		if rest, ok := strings.CutPrefix(f, StreamName+"."); ok {
			out[i] = p.eventPrefix() + "." + rest
		} else {
			out[i] = f
		}
	}
	return out
}

// queueFiltersOf are the queue's filters, from those of its consumer on
// p: the reverse of queueFilters.
func (p Partition) queueFiltersOf(have []string) []string {
	if p.Of == 0 {
		return have
	}
	if len(have) == 1 && have[0] == p.Subjects() {
		return nil
	}
	out := make([]string, len(have))
	for i, f := range have {
		if rest, ok := strings.CutPrefix(f, p.eventPrefix()+"."); ok {
			out[i] = StreamName + "." + rest
		} else {
			out[i] = f
		}
	}
	return out
}

// queueConfig is cfg, a queue's consumer in the queue's terms, made the
// consumer on p.
func (p Partition) queueConfig(cfg jetstream.ConsumerConfig) jetstream.ConsumerConfig {
	return p.withFilters(cfg, p.queueFilters)
}

// queueConfigOf is the config of a queue's consumer on p, in the queue's
// terms: the reverse of queueConfig.
func (p Partition) queueConfigOf(cfg jetstream.ConsumerConfig) jetstream.ConsumerConfig {
	return p.withFilters(cfg, p.queueFiltersOf)
}

// withFilters is cfg with its filters (FilterSubject or FilterSubjects)
// mapped by mapping into FilterSubjects; cfg itself in layout 2.
func (p Partition) withFilters(cfg jetstream.ConsumerConfig, mapping func([]string) []string) jetstream.ConsumerConfig {
	if p.Of == 0 {
		return cfg
	}
	filters := cfg.FilterSubjects
	if cfg.FilterSubject != "" {
		filters = []string{cfg.FilterSubject}
	}
	cfg.FilterSubject, cfg.FilterSubjects = "", mapping(filters)
	return cfg
}
