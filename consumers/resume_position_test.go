package consumers

import (
	"errors"
	"slices"
	"testing"

	"github.com/ordersd/ordersd/internal/eventstore"
)

// Only the exact string Seal made opens: any byte changed, a truncated or
// lengthened position, the same bytes in another base64 spelling, one
// sealed with another deployment's key, and anything that is no position
// at all are ErrBadPosition.
func TestResumePositionsOpenOnlyWhatWasSealed(t *testing.T) {
	t.Parallel()
	positions := NewResumePositions(newAckTokens([]byte("test-key-0123456789abcdef0123456789")))
	other := NewResumePositions(newAckTokens([]byte("other-key-0123456789abcdef012345678")))
	want := Position{Epoch: testEpoch, Sequence: 1<<40 + 7}
	good := positions.Seal(want)
	if got, err := positions.Open(good); err != nil || got != want {
		t.Fatalf("Open(Seal(%+v)) = %+v, %v", want, got, err)
	}

	raw, ok := decode(good)
	if !ok {
		t.Fatalf("Seal made %q, not in the token encoding", good)
	}
	refused := map[string]string{
		"empty":                       "",
		"garbage":                     "not a position",
		"truncated":                   good[:len(good)-1],
		"lengthened":                  good + "A",
		"other trailing bits":         withTrailingBitsChanged(t, good),
		"padded":                      good + "==",
		"sealed with another key":     other.Seal(want),
		"with a line feed inside":     good[:10] + "\n" + good[10:],
		"standard instead of URL b64": "+" + good[1:],
	}
	for i := range raw {
		altered := append([]byte(nil), raw...)
		altered[i] ^= 0x01
		refused["byte "+string(rune('A'+i))+" flipped"] = tokenEncoding.EncodeToString(altered)
	}
	for name, position := range refused {
		if got, err := positions.Open(position); !errors.Is(err, ErrBadPosition) {
			t.Errorf("%s: Open(%q) = %+v, %v; want ErrBadPosition", name, position, got, err)
		}
	}
}

// Positions of the same epoch and sequence are the same string on every
// node (the key, not the node, makes them), and a position names its epoch
// so that one of another stream incarnation can be told apart.
func TestResumePositionsAreTheSameOnEveryNodeAndNameTheirEpoch(t *testing.T) {
	t.Parallel()
	key := []byte("shared-key-0123456789abcdef01234567")
	a, b := NewResumePositions(newAckTokens(key)), NewResumePositions(newAckTokens(key))
	pos := Position{Epoch: testEpoch, Sequence: 42}
	if a.Seal(pos) != b.Seal(pos) {
		t.Fatalf("two nodes sharing a key sealed %+v as %q and %q", pos, a.Seal(pos), b.Seal(pos))
	}
	later := pos
	later.Epoch[0] ^= 0xff
	got, err := b.Open(a.Seal(later))
	if err != nil || got.Epoch == pos.Epoch || got != later {
		t.Fatalf("Open(Seal(%+v)) = %+v, %v", later, got, err)
	}
}

// A position of layout 3 holds one place per partition and opens only in
// a layout of as many partitions: one of layout 2, or of another N, is
// ErrForeignPosition (and a layout-3 one in layout 2); altered, it is
// ErrBadPosition.
func TestResumePositionsNameTheirLayout(t *testing.T) {
	t.Parallel()
	positions := NewResumePositions(newAckTokens([]byte("test-key-0123456789abcdef0123456789")))
	three := eventstore.Layout{Partitions: 3}
	want := []Position{{Epoch: testEpoch, Sequence: 7}, {Epoch: testEpoch, Sequence: 0}, {Epoch: testEpoch, Sequence: 1 << 33}}
	want[1].Epoch[0] ^= 0xff
	good := positions.SealIn(three, want)
	if got, err := positions.OpenIn(three, good); err != nil || !slices.Equal(got, want) {
		t.Fatalf("OpenIn(SealIn(%+v)) = %+v, %v", want, got, err)
	}
	v1 := positions.SealIn(eventstore.Layout{}, want[:1])
	if got, err := positions.OpenIn(eventstore.Layout{}, v1); err != nil || got[0] != want[0] {
		t.Fatalf("a layout-2 position opened in layout 2: %+v, %v", got, err)
	}
	for name, tc := range map[string]struct {
		layout   eventstore.Layout
		position string
	}{
		"layout 2 in layout 3":         {three, v1},
		"layout 3 in layout 2":         {eventstore.Layout{}, good},
		"3 partitions in 2":            {eventstore.Layout{Partitions: 2}, good},
		"1 partition in 3":             {three, positions.SealPartitions(want[:1])},
		"1 partition in layout 2 (v2)": {eventstore.Layout{}, positions.SealPartitions(want[:1])},
	} {
		if got, err := positions.OpenIn(tc.layout, tc.position); !errors.Is(err, ErrForeignPosition) {
			t.Errorf("%s: OpenIn = %+v, %v; want ErrForeignPosition", name, got, err)
		}
	}
	raw, _ := decode(good)
	for i := range raw {
		altered := append([]byte(nil), raw...)
		altered[i] ^= 0x01
		if got, err := positions.OpenIn(three, tokenEncoding.EncodeToString(altered)); !errors.Is(err, ErrBadPosition) {
			t.Errorf("byte %d flipped: OpenIn = %+v, %v; want ErrBadPosition", i, got, err)
		}
	}
}
