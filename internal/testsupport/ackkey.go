package testsupport

import (
	"crypto/rand"
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"
)

// AckKeyFile writes a fresh ack-token key as ordersd reads it (base64 text
// of 32 random bytes, as the recipe of docs/production.md makes it) and
// returns its path: give the same file to every node of a test deployment.
func AckKeyFile(t testing.TB) string {
	t.Helper()
	keyFile := filepath.Join(t.TempDir(), "ack.key")
	key := make([]byte, 32)
	_, _ = rand.Read(key) // crypto/rand.Read never fails
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return keyFile
}
