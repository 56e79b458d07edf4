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

// deadLetterSubjects are the advisory subjects ORDERS_DEAD_LETTERS stores:
// both kinds, for the consumers of ORDERS and of ORDERS_REDRIVE.
func deadLetterSubjects() []string {
	var subjects []string
	for _, kind := range []string{advisoryMaxDeliveries, advisoryTerminated} {
		for _, stream := range []string{eventstore.StreamName, RedriveStream} {
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
