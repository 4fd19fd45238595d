package auth

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// MinSecretLen is the shortest HS256 secret accepted: 256 bits, the size of
// the hash (RFC 7518 section 3.2).
const MinSecretLen = 32

// minRSABits is the smallest RSA modulus accepted (NIST SP 800-131A).
const minRSABits = 2048

// Config builds a Verifier. Exactly one of Secret or PublicKeyPEM is set.
type Config struct {
	// Secret is the HS256 shared secret, at least MinSecretLen bytes.
	Secret []byte
	// PublicKeyPEM is the first PEM block of: a "PUBLIC KEY" (PKIX), an
	// "RSA PUBLIC KEY" (PKCS #1) or a "CERTIFICATE", whose key is used
	// (the certificate itself is not checked). An RSA key of at least 2048
	// bits means RS256; a P-256 EC key means ES256.
	PublicKeyPEM []byte
	// Leeway is the clock skew allowed when checking exp and nbf. Zero
	// means none: a token is refused the second it expires. Issuers and
	// gateways on different hosts want a few seconds to a minute.
	Leeway time.Duration
}

// Verifier checks tokens against one key. It is safe for concurrent use.
type Verifier struct {
	key    any // []byte, *rsa.PublicKey or *ecdsa.PublicKey
	parser *jwt.Parser
	leeway time.Duration
}

// NewVerifier checks cfg and builds a Verifier.
func NewVerifier(cfg Config) (*Verifier, error) {
	if (len(cfg.Secret) > 0) == (len(cfg.PublicKeyPEM) > 0) {
		return nil, errors.New("auth: set exactly one of a secret and a public key")
	}
	if cfg.Leeway < 0 {
		return nil, fmt.Errorf("auth: negative leeway %v", cfg.Leeway)
	}
	var (
		key any
		alg string
	)
	if len(cfg.Secret) > 0 {
		if len(cfg.Secret) < MinSecretLen {
			return nil, fmt.Errorf("auth: HS256 secret is %d bytes, want at least %d", len(cfg.Secret), MinSecretLen)
		}
		key, alg = bytes.Clone(cfg.Secret), jwt.SigningMethodHS256.Alg()
	} else {
		var err error
		if key, alg, err = parsePublicKey(cfg.PublicKeyPEM); err != nil {
			return nil, err
		}
	}
	return &Verifier{
		key:    key,
		leeway: cfg.Leeway,
		// One algorithm, the key's: a token cannot choose how it is checked.
		parser: jwt.NewParser(jwt.WithValidMethods([]string{alg}), jwt.WithLeeway(cfg.Leeway)),
	}, nil
}

// parsePublicKey reads the first PEM block of b and returns its key and the
// algorithm that goes with it.
func parsePublicKey(b []byte) (key any, alg string, err error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, "", errors.New("auth: public key is not PEM")
	}
	switch block.Type {
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			key = cert.PublicKey
		}
	default:
		// Most often a private key pasted by mistake.
		return nil, "", fmt.Errorf("auth: PEM block %q is not a public key or certificate", block.Type)
	}
	if err != nil {
		return nil, "", fmt.Errorf("auth: PEM block %q: %w", block.Type, err)
	}
	switch k := key.(type) {
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < minRSABits {
			return nil, "", fmt.Errorf("auth: RSA key is %d bits, want at least %d", n, minRSABits)
		}
		return k, jwt.SigningMethodRS256.Alg(), nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, "", fmt.Errorf("auth: EC key on %s, want P-256 (ES256)", k.Curve.Params().Name)
		}
		return k, jwt.SigningMethodES256.Alg(), nil
	}
	return nil, "", fmt.Errorf("auth: unsupported public key type %T, want RSA or P-256 EC", key)
}
