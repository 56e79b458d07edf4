package deadletters

import (
	"github.com/ordersd/ordersd/internal/eventstore"
)

// The streams of dead letters and redrive markers (see the package
// comment).
const (
	// Stream stores the advisories of dead letters.
	Stream = "ORDERS_DEAD_LETTERS"
	// RedriveStream stores redrive markers, on RedriveStream.<consumer>.
	RedriveStream = "ORDERS_REDRIVE"

	advisoryPrefix        = "$JS.EVENT.ADVISORY.CONSUMER."
	advisoryMaxDeliveries = "MAX_DELIVERIES"
	advisoryTerminated    = "MSG_TERMINATED"
)

// deadLetterSubjects are the advisory subjects ORDERS_DEAD_LETTERS stores
// in layout l: both kinds, for the consumers of each stream of orders
// (ORDERS in layout 2, every partition's ORDERS_<k> in layout 3) and of
// ORDERS_REDRIVE. Layout 2's are four subjects, as they always were.
func deadLetterSubjects(l eventstore.Layout) []string {
	var streams []string
	for _, p := range l.All() {
		streams = append(streams, p.Stream())
	}
	streams = append(streams, RedriveStream)
	var subjects []string
	for _, kind := range []string{advisoryMaxDeliveries, advisoryTerminated} {
		for _, stream := range streams {
			subjects = append(subjects, advisoryPrefix+kind+"."+stream+".*")
		}
	}
	return subjects
}

// deadLettersOf is the subject filter of one consumer's dead letters: the
// stream holds nothing but the subjects above, so the wildcards select
// exactly both kinds on every stream.
func deadLettersOf(consumer string) string { return advisoryPrefix + "*.*." + consumer }

// redriveSubject is where the redrive markers of a consumer are stored.
func redriveSubject(consumer string) string { return RedriveStream + "." + consumer }
