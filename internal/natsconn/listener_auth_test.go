package natsconn

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/ordersd/ordersd/internal/deadletters"
	"github.com/ordersd/ordersd/internal/eventstore"
)

// The nats-server configuration that docs/other-writers.md shows for an
// external NATS is valid, gives ordersd's user every right, and gives the
// reader exactly ReaderPermissions, the embedded listener's.
func TestDocumentedReaderPermissions(t *testing.T) {
	doc, err := os.ReadFile("../../docs/other-writers.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(doc), "<!-- reader permissions: begin -->\n```\n")
	if ok {
		block, _, ok = strings.Cut(block, "```\n<!-- reader permissions: end -->")
	}
	if !ok {
		t.Fatal("docs/other-writers.md has no reader permissions block")
	}
	path := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(path, []byte(block), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("the documented configuration: %v", err)
	}
	users := map[string]*server.User{}
	for _, u := range opts.Users {
		users[u.Username] = u
	}
	if u := users["ordersd"]; u == nil || u.Permissions != nil {
		t.Fatalf("ordersd's user: %+v, want every right", u)
	}
	reader := users["reader"]
	if reader == nil || reader.Permissions == nil || reader.Permissions.Publish == nil || reader.Permissions.Subscribe == nil {
		t.Fatalf("the reader: %+v", reader)
	}
	want := ReaderPermissions([]string{eventstore.StreamName, eventstore.IndexStreamName, deadletters.Stream, deadletters.RedriveStream})
	for what, pair := range map[string][2][]string{
		"publish":   {reader.Permissions.Publish.Allow, want.Publish.Allow},
		"subscribe": {reader.Permissions.Subscribe.Allow, want.Subscribe.Allow},
	} {
		got, wanted := slices.Sorted(slices.Values(pair[0])), slices.Sorted(slices.Values(pair[1]))
		if !slices.Equal(got, wanted) {
			t.Errorf("the documented reader may %s %v, the listener's reader %v", what, got, wanted)
		}
	}
	if len(reader.Permissions.Publish.Deny) != 0 || len(reader.Permissions.Subscribe.Deny) != 0 || want.Publish.Deny != nil || want.Subscribe.Deny != nil {
		t.Error("deny lists differ")
	}
}
