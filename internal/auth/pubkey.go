package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// parsePublicKey reads a PEM public key and the JWT algorithms it verifies.
func parsePublicKey(data []byte) (any, []string, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, nil, errors.New("no PEM block")
	}
	key, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, nil, err
	}
	switch key.(type) {
	case *rsa.PublicKey:
		return key, []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}, nil
	case *ecdsa.PublicKey:
		return key, []string{"ES256", "ES384", "ES512"}, nil
	case ed25519.PublicKey:
		return key, []string{"EdDSA"}, nil
	}
	return nil, nil, fmt.Errorf("unsupported key type %T", key)
}
