package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// SignatureHeader carries a POST's signature: see Sign.
const SignatureHeader = "X-Pushgate-Signature"

const signaturePrefix = "sha256="

// Sign returns the value of SignatureHeader for body: "sha256=" and the
// lowercase hex HMAC-SHA256 of body keyed with secret.
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	var sum [sha256.Size]byte
	return signaturePrefix + hex.EncodeToString(mac.Sum(sum[:0]))
}

// Verify reports whether header, a SignatureHeader value, signs body with
// secret. It compares in constant time. An empty secret verifies nothing,
// since anyone can sign with it.
func Verify(secret, body []byte, header string) bool {
	digits, ok := strings.CutPrefix(header, signaturePrefix)
	if !ok || len(digits) != hex.EncodedLen(sha256.Size) || len(secret) == 0 {
		return false
	}
	var got [sha256.Size]byte
	if _, err := hex.Decode(got[:], []byte(digits)); err != nil {
		return false
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	var want [sha256.Size]byte
	return hmac.Equal(got[:], mac.Sum(want[:0]))
}
