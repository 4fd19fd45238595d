// Package auth authenticates WebSocket upgrades with JSON Web Tokens
// (RFC 7519), verified by github.com/golang-jwt/jwt/v5.
//
// A Verifier holds one key and accepts the one algorithm that key is for:
// HS256 for a shared secret, RS256 for an RSA public key, ES256 for a P-256
// public key. Every other "alg", "none" included, is refused, so a token
// cannot pick its own algorithm (the HS256-signed-with-the-public-key
// confusion). Verifier.Authorize plugs into wsproto.Upgrader.Authorize:
//
//	v, err := auth.NewVerifier(auth.Config{Secret: secret, Leeway: 30 * time.Second})
//	u := &wsproto.Upgrader{Authorize: v.Authorize}
//	// after an upgrade, Handshake.State is the connection's *auth.Claims
//
// # Where the token comes from
//
// TokenFromHead looks first at the query parameter "token" of the request
// target (ws://host/ws?token=...), because browsers cannot set headers on a
// WebSocket, then at an "Authorization: Bearer ..." header, for every other
// client. Query strings end up in access logs: keep tokens short-lived.
//
// # What a token grants
//
// The claims map to permissions as follows; a token with a claim that does
// not fit is refused whole, never trimmed:
//
//   - "sub" is the user (Claims.User). User alice gets her personal channel
//     "#alice" (protocol.PersonalChannel), which carries what is published
//     to user alice; no other connection can subscribe to it. "sub" may be
//     absent (an anonymous connection, no personal channel); if present it
//     must be a valid user name (protocol.ValidUser).
//   - "channels" is an array of patterns (protocol.Patterns) naming the
//     public channels the connection may subscribe to: "news" or "chat:*"
//     or "*". A single string instead of an array is malformed.
//   - "publish", optional, is an array of patterns naming the channels the
//     connection may publish to. Without it the connection only listens.
//   - "exp" is optional; when present the token is refused after it, and
//     Claims.ExpiresAt carries it, and Claims.Deadline exp plus the leeway,
//     so that a connection can be closed when its token runs out. "nbf",
//     when present, is enforced too. Both allow Config.Leeway of clock
//     skew. "iat" is not checked: an issuer's clock
//     running slightly ahead must not refuse fresh tokens.
//
// Verification errors wrap one of the Err sentinels; Authorize turns them
// into a 401 with a short reason ("token expired") and WWW-Authenticate.
package auth
