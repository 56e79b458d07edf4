package node

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/ordersd/ordersd/internal/testsupport"
)

// Key files are text. Every key the recipe of docs/production.md makes
// loads, whatever its random bytes (a key whose raw bytes begin or end
// with whitespace is not trimmed into another key); raw binary files are
// refused with the fix.
func TestAckTokenKeyFilesAreText(t *testing.T) {
	dir := t.TempDir()
	// A key whose raw bytes start and end with whitespace: trimmed as raw
	// bytes, it would lose them.
	key := append(append([]byte{'\n', ' '}, bytes.Repeat([]byte{0xA5}, 28)...), '\t', '\r')
	for _, tc := range []struct {
		name string
		file string
	}{
		{"base64, as the recipe of docs/production.md writes it", base64.StdEncoding.EncodeToString(key) + "\n"},
		{"base64 without padding", base64.RawStdEncoding.EncodeToString(key)},
		{"URL-safe base64", base64.URLEncoding.EncodeToString(key)},
		{"hex", hex.EncodeToString(key) + "\n"},
		{"upper-case hex", strings.ToUpper(hex.EncodeToString(key))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readAckTokenKey(testsupport.WriteFile(t, dir, "key", []byte(tc.file)))
			if err != nil || !bytes.Equal(got, key) {
				t.Fatalf("readAckTokenKey = %x, %v; want %x", got, err, key)
			}
		})
	}
	// The recipe's output loads every time (it failed about 1 in 20 when
	// the file held raw bytes).
	for range 200 {
		raw := make([]byte, 32)
		_, _ = rand.Read(raw)
		file := testsupport.WriteFile(t, dir, "recipe.key", []byte(base64.StdEncoding.EncodeToString(raw)+"\n"))
		if got, err := readAckTokenKey(file); err != nil || !bytes.Equal(got, raw) {
			t.Fatalf("a recipe key %x: %x, %v", raw, got, err)
		}
	}
	for _, tc := range []struct {
		name, file, want string
	}{
		{"raw bytes are refused with the fix", "\x00\xff\x10raw binary key of some length\x80", "base64 < old.key"},
		{"a short key is refused", base64.StdEncoding.EncodeToString(make([]byte, 16)), "at least 32"},
		{"an empty file is refused", "\n", "at least 32"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readAckTokenKey(testsupport.WriteFile(t, dir, "bad.key", []byte(tc.file)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("readAckTokenKey: %v, want an error with %q", err, tc.want)
			}
		})
	}
}
