package auth

import (
	"errors"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// Verification errors. The error Verify returns wraps one of them and,
// where there is one, the jwt/v5 error beneath it.
var (
	ErrNoToken     = errors.New("auth: missing token")
	ErrMalformed   = errors.New("auth: malformed token")
	ErrSignature   = errors.New("auth: invalid token signature")
	ErrExpired     = errors.New("auth: token expired")
	ErrNotYetValid = errors.New("auth: token not yet valid")
	ErrClaims      = errors.New("auth: invalid token claims")
)

// verifyError is a refused token: which sentinel, the short reason a client
// is told, and the cause for logs.
type verifyError struct {
	kind   error
	reason string // short ASCII, fit for an HTTP status line
	cause  error
}

func (e *verifyError) Error() string { return e.kind.Error() + ": " + e.cause.Error() }

func (e *verifyError) Unwrap() []error { return []error{e.kind, e.cause} }

func refused(kind, cause error) *verifyError {
	return &verifyError{kind: kind, reason: strings.TrimPrefix(kind.Error(), "auth: "), cause: cause}
}

// claimError refuses a validly signed token for the content of one claim.
func claimError(claim string, cause error) *verifyError {
	return &verifyError{kind: ErrClaims, reason: "invalid " + claim + " claim", cause: cause}
}

// fromJWT sorts a jwt/v5 error under our sentinels. The checks run in this
// order because the library joins several validation errors into one.
func fromJWT(err error) *verifyError {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return refused(ErrMalformed, err)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		// Also a refused or unknown "alg": the token cannot be verified
		// with our key.
		return refused(ErrSignature, err)
	case errors.Is(err, jwt.ErrTokenExpired):
		return refused(ErrExpired, err)
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return refused(ErrNotYetValid, err)
	}
	return refused(ErrClaims, err)
}

// Reason is the short text a client is told about a refusal from Verify:
// "token expired", "invalid token signature", ... It never holds the
// token or the key.
func Reason(err error) string {
	var ve *verifyError
	if errors.As(err, &ve) {
		return ve.reason
	}
	if errors.Is(err, ErrNoToken) {
		return "missing token"
	}
	return "invalid token"
}
