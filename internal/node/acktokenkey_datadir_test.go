package node

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// A single embedded node without a key file keeps one in its data
// directory: made once, readable by its owner only, and the same key on
// every later start, so tokens and watch positions outlive a restart.
func TestDataDirKeyIsMadeOnceAndKept(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path, err := dataDirAckTokenKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	if path != filepath.Join(dir, dataDirKeyFile) {
		t.Fatalf("key file at %s", path)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("key file mode %o, want 600", perm)
	}
	first, err := readAckTokenKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dataDirAckTokenKey(dir); err != nil {
		t.Fatal(err)
	}
	again, err := readAckTokenKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, again) || len(first) < minAckTokenKey {
		t.Fatalf("key changed on the second start (%d bytes, then %d)", len(first), len(again))
	}
}
