package node

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// minAckTokenKey is the fewest random bytes an ack token key holds.
const minAckTokenKey = 32

// AckTokenKeyRecipe makes a key file that readAckTokenKey accepts.
const AckTokenKeyRecipe = "head -c 32 /dev/urandom | base64 > ack-token.key"

// errKeyNotText says a key file holds something other than hex or base64.
var errKeyNotText = errors.New("is not hex or base64 text")

// readAckTokenKey reads a key file: hex or base64 (standard or URL
// alphabet, padded or not) of at least 32 random bytes, with surrounding
// whitespace ignored. Raw bytes are refused: a random raw key ends in a
// whitespace byte about one time in twenty, and trimming it changed the
// key; such a file is turned into text, with the same key, by
// `base64 < old.key > ack-token.key`.
func readAckTokenKey(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ack token key file: %w", err)
	}
	key, err := decodeKeyText(bytes.TrimSpace(data))
	if err != nil {
		return nil, fmt.Errorf("ack token key file %s %w: since this version key files are text; make one with `%s` (a raw key file keeps its key as `base64 < old.key > ack-token.key`)", path, err, AckTokenKeyRecipe)
	}
	if len(key) < minAckTokenKey {
		return nil, fmt.Errorf("ack token key file %s holds %d bytes, want at least %d; make one with `%s`", path, len(key), minAckTokenKey, AckTokenKeyRecipe)
	}
	return key, nil
}

// decodeKeyText decodes hex first (its digits are a subset of base64's,
// and an even run of them is far likelier hex), then base64.
func decodeKeyText(text []byte) ([]byte, error) {
	s := string(text)
	if len(s)%2 == 0 {
		if key, err := hex.DecodeString(s); err == nil {
			return key, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if key, err := enc.DecodeString(s); err == nil {
			return key, nil
		}
	}
	return nil, errKeyNotText
}

// dataDirKeyFile is the key file a single embedded node keeps in its data
// directory when it is given none.
const dataDirKeyFile = "ack-token.key"

// dataDirAckTokenKey returns the path of the key file in dir, making it
// (32 random bytes as base64 text, readable by its owner only) when there
// is none: written aside, then linked into place, so that a crash never
// leaves a half-written key. The data directory's lock keeps a second
// process from racing.
func dataDirAckTokenKey(dir string) (string, error) {
	path := filepath.Join(dir, dataDirKeyFile)
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	key := make([]byte, minAckTokenKey)
	_, _ = rand.Read(key) // crypto/rand.Read never fails
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("ack token key file: %w", err)
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("ack token key file: %w", err)
	}
	return path, nil
}
