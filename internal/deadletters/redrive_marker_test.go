package deadletters

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/ordersd/ordersd/internal/eventstore"
)

// A marker of layout 2 is stored as it always was and decodes as the
// stream ORDERS (markers stored before layout 3 keep working); one of
// layout 3 names its partition; anything else is not a marker.
func TestRedriveMarkersNameTheirPartition(t *testing.T) {
	two, err := json.Marshal(redriveMarker{StreamSeq: 7, DeadLetter: 3})
	if err != nil {
		t.Fatal(err)
	}
	if string(two) != `{"stream_seq":7,"dead_letter":3}` {
		t.Errorf("layout 2's marker is %s, not as before", two)
	}
	three, err := json.Marshal(redriveMarker{StreamSeq: 7, DeadLetter: 3, Partition: 2, Partitions: 3})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		data string
		want eventstore.Partition
	}{
		{string(two), eventstore.Partition{}},
		{string(three), eventstore.Partition{Number: 2, Of: 3}},
		{`{"stream_seq":7,"dead_letter":3,"partitions":3}`, eventstore.Partition{Number: 0, Of: 3}},
	} {
		p, seq, err := ParseRedriveMarker([]byte(c.data))
		if err != nil || p != c.want || seq != 7 {
			t.Errorf("ParseRedriveMarker(%s) = %v, %d, %v; want %v, 7", c.data, p, seq, err, c.want)
		}
	}
	for _, bad := range []string{`x`, `{"dead_letter":3}`, `{"stream_seq":7,"partition":3,"partitions":3}`,
		`{"stream_seq":7,"partition":1}`, `{"stream_seq":7,"partition":-1,"partitions":3}`, `{"stream_seq":7,"partitions":65}`} {
		if _, _, err := ParseRedriveMarker([]byte(bad)); !errors.Is(err, eventstore.ErrCorruptEvent) {
			t.Errorf("ParseRedriveMarker(%s): %v, want ErrCorruptEvent", bad, err)
		}
	}
}
