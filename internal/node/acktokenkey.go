package node

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
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
