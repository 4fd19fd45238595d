// Package wsproto is pushgate's RFC 6455 layer, on top of github.com/gobwas/ws.
//
// It knows bytes and the handshake, nothing about sockets or channels:
//
//   - ReadHead and RequestTarget read an HTTP request head without losing a
//     byte, so that a listener can tell upgrades from plain HTTP.
//   - Upgrader checks the opening handshake (gobwas/ws's checks plus the
//     key's encoding, 426 for a missing version, the Origin allow-list,
//     subprotocol and permessage-deflate negotiation, an authorization
//     hook) and writes the answer; a refusal is a *HandshakeError with an
//     HTTP status.
//   - Reader decodes client frames fed in arbitrary pieces, enforcing every
//     framing rule (fragments, control frames, masking, reserved bits,
//     close payloads, UTF-8 checked incrementally and failing fast, size
//     limits); a violation is a *CloseError carrying its close code.
//   - AppendFrame, AppendCompressedFrame and AppendCloseFrame encode server
//     frames once, for any number of connections.
//
// permessage-deflate runs without context takeover, so connections keep no
// compression state between messages.
package wsproto
