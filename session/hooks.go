package session

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net"
	"time"

	"github.com/pushgate/pushgate/auth"
	"github.com/pushgate/pushgate/broadcast"
	"github.com/pushgate/pushgate/protocol"
	"github.com/pushgate/pushgate/proxy"
	"github.com/pushgate/pushgate/server"
	"github.com/pushgate/pushgate/wsproto"
)

// The backend's proxies (package proxy) in a session's life:
//
//   - Authorize admits a connection by its token or, without a valid one,
//     by the connect proxy's answer, which becomes its claims; the client
//     id the proxy was told is reserved for it.
//   - A subscribe its claims do not grant is asked of the subscribe proxy;
//     every publish (but to a personal channel) of the publish proxy.
//   - While the proxy decides, the session is deciding: the ops the client
//     sends after that one wait, in order, and run once the answer has
//     been applied, so replies keep the order of ops and a client's
//     publishes the order it sent them in. At most maxHeldOps ops and
//     maxHeldBytes bytes wait; past that the connection is closed with
//     1013. No goroutine waits for a session: the proxy client's own, one
//     per call out, applies the answer.
//   - Claims the connect proxy granted are renewed through it when they
//     expire (Expired); the backend's refusal closes the connection with
//     4001, and its failure to answer is retried for a minute.

// Bounds of the ops one connection may have waiting behind a proxy call,
// and of their bytes on the node (hostile clients behind a slow backend
// would otherwise hold a MiB each).
const (
	maxHeldOps       = 256     // the default message burst
	maxHeldBytes     = 1 << 20 // a second at the default byte rate
	maxNodeHeldBytes = 64 << 20
)

// heldOps are a deciding session's waiting ops, and how to give up the
// call they wait for.
type heldOps struct {
	ops    [][]byte
	bytes  int
	cancel context.CancelFunc
}

// admitted is what Authorize leaves in a handshake's state for a
// connection the connect proxy admitted: its claims and the serial of the
// client id the proxy was told.
type admitted struct {
	claims *auth.Claims
	serial uint32
}

// stateClaims reads a handshake's state: a token's claims, or what the
// connect proxy admitted.
func stateClaims(state any) (*auth.Claims, uint32) {
	switch v := state.(type) {
	case *auth.Claims:
		return v, 0
	case *admitted:
		return v.claims, v.serial
	}
	return nil, 0
}

// Authorize is the server's Authorize (server.Config): the token of the
// request, when there is one and it verifies, or else the connect proxy's
// answer, admits the connection. Without a Verifier nor a Connect proxy
// it admits every connection with no claims (open mode).
func (h *Handler) Authorize(head []byte, slot int, remote net.Addr) (any, error) {
	if h.verifier != nil {
		token, ok := auth.TokenFromHead(head)
		var err error = auth.ErrNoToken
		if ok {
			var claims *auth.Claims
			if claims, err = h.verifier.Verify(token); err == nil {
				return claims, nil
			}
		}
		if h.connect == nil {
			return nil, wsproto.Unauthorized(auth.Reason(err))
		}
	}
	if h.connect == nil {
		return nil, nil
	}
	serial := h.index.serial.Add(1) // the id the backend is told is the one the session gets
	client := h.index.idOf(slot, serial)
	transport := "websocket"
	if _, target, _ := wsproto.RequestTarget(head); bytes.HasPrefix(target, []byte("/events")) {
		transport = "sse"
	}
	claims, err := h.connect.Connect(head, client, transport, remote)
	if err != nil {
		return nil, err
	}
	return &admitted{claims: claims, serial: serial}, nil
}

// Expired is the server's Expired (server.Config): a connection whose
// claims came from the connect proxy is renewed through it. Only the
// backend's refusal closes it (4001); when the backend cannot be asked
// (busy, timing out, its circuit open) the connection keeps its claims
// and is asked again every few seconds, for renewalGrace past its
// expire_at, so that a backend's hiccup does not close every connection
// expiring during it. It reports whether it took the connection in hand.
func (h *Handler) Expired(c *server.Conn) bool {
	s, ok := c.Data().(*Session)
	if !ok || h.connect == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.is(ended) || s.claims == nil || !s.claims.Proxied {
		return false
	}
	claims := s.claims
	retry := func() bool {
		if time.Since(claims.ExpiresAt) >= renewalGrace {
			return false
		}
		c.SetExpiry(time.Now().Add(h.renewalRetry + rand.N(h.renewalRetry)))
		return true
	}
	h.hooks.Add(1)
	asked := h.connect.Refresh(h.index.clientID(s), claims.User, func(renewed *auth.Claims, err error) {
		defer h.hooks.Done()
		s.mu.Lock()
		defer s.mu.Unlock()
		switch {
		case s.is(ended):
		case err == nil && renewed.User == claims.User:
			s.claims = renewed
			c.SetExpiry(renewed.Deadline)
		case err != nil && !errors.Is(err, proxy.ErrRefused) && retry():
			h.log.Debug("connection not renewed yet: the connect proxy could not be asked", "user", claims.User, "err", err)
		default:
			h.log.Debug("connection not renewed by the connect proxy", "user", claims.User, "err", err)
			s.conn().Close(server.ReasonTokenExpired, "token expired")
		}
	})
	if !asked {
		h.hooks.Done()
		return retry()
	}
	return true
}

// A proxied connection whose backend cannot be asked about its renewal
// is asked again every Config.RenewalRetry (plus as much jitter, at
// most), for renewalGrace past its expire_at.
const renewalGrace = time.Minute

// askSubscribe asks the subscribe proxy whether s may subscribe to name.
// s.mu is held.
func (h *Handler) askSubscribe(s *Session, name string, pos *broadcast.Position) {
	req := proxy.SubscribeRequest{Client: h.index.clientID(s), User: s.user(), Channel: name}
	if s.claims != nil {
		req.Info = s.claims.Info
	}
	// Refused, its recovery position goes; unanswered, it stays in the
	// stream's ids, for a reconnect to recover from.
	h.ask(s, h.subscribeProxy, req, name, func(v proxy.Verdict) {
		if v.Refused {
			h.refuseSubscribe(s, v.Code, v.Message, name)
			return
		}
		h.subscribeAllowed(s, name, pos)
	})
}

// askPublish asks the publish proxy about a client's publish: it may
// refuse it, let it through, or replace its data. s.mu is held.
func (h *Handler) askPublish(s *Session, name string, data []byte, granted bool) {
	if !json.Valid(data) {
		h.reply(s, protocol.CodeBadRequest, "publish data must be valid JSON", name)
		return
	}
	data = bytes.Clone(data) // the read buffer is reused
	req := proxy.PublishRequest{Client: h.index.clientID(s), User: s.user(), Channel: name, Data: data, Granted: granted}
	h.ask(s, h.publishProxy, req, name, func(v proxy.Verdict) {
		switch {
		case v.Refused:
			h.reply(s, v.Code, v.Message, name)
		case v.Data != nil:
			h.publishNow(s, name, v.Data)
		default:
			h.publishNow(s, name, data)
		}
	})
}

// ask sends req to p and marks s deciding until apply has run with the
// verdict, under s.mu; the ops held meanwhile run after it. A proxy that
// cannot answer is an unavailable error for the op. s.mu is held.
func (h *Handler) ask(s *Session, p *proxy.Ops, req any, channel string, apply func(proxy.Verdict)) {
	// The call is given up if the session is shed or ends meanwhile
	// (dropHeld): a closed connection's call does not keep a slot.
	ctx, cancel := context.WithCancel(context.Background())
	h.hooks.Add(1)
	ok := p.Ask(ctx, req, func(v proxy.Verdict, err error) {
		defer h.hooks.Done()
		cancel()
		s.mu.Lock()
		defer s.mu.Unlock()
		s.clear(deciding)
		if s.is(ended) || s.is(shedding) {
			return // End or hold dropped the held ops
		}
		if err != nil {
			h.reply(s, protocol.CodeUnavailable, unavailable(err), channel)
		} else {
			apply(v)
		}
		h.runHeld(s)
	})
	if !ok {
		cancel()
		h.hooks.Done()
		h.reply(s, protocol.CodeUnavailable, "the backend is busy, try again", channel)
		return
	}
	s.set(deciding)
	h.heldMu.Lock()
	h.heldLocked(s).cancel = cancel
	h.heldMu.Unlock()
}

// heldLocked is s's held ops, made if it has none. heldMu is held.
func (h *Handler) heldLocked(s *Session) *heldOps {
	held := h.held[s]
	if held == nil {
		held = &heldOps{}
		h.held[s] = held
	}
	return held
}

func unavailable(err error) string {
	if errors.Is(err, proxy.ErrCircuitOpen) {
		return "the backend is unavailable, try again later"
	}
	return "the backend could not decide, try again"
}

// hold keeps an op that came while s is deciding; past the bounds the
// connection is closed. It reports whether the op was kept. s.mu is held.
func (h *Handler) hold(s *Session, payload []byte) bool {
	h.heldMu.Lock()
	held := h.heldLocked(s)
	full := len(held.ops) >= maxHeldOps || held.bytes+len(payload) > maxHeldBytes
	nodeFull := h.heldBytes+len(payload) > maxNodeHeldBytes
	if !full && !nodeFull {
		held.ops = append(held.ops, bytes.Clone(payload))
		held.bytes += len(payload)
		h.heldBytes += len(payload)
	}
	h.heldMu.Unlock()
	if full || nodeFull {
		// Closed, its held ops and its call go at once, and what it sends
		// until its socket closes is dropped: a shed connection holds
		// nothing another would need.
		s.set(shedding)
		h.dropHeld(s)
		if full {
			s.conn().Close(server.ReasonOverloaded, "too many ops waiting for the backend")
		} else {
			s.conn().Close(server.ReasonOverloaded, "the gateway holds too many ops waiting for the backend")
		}
		return false
	}
	h.proxyM.Held.Inc()
	h.proxyM.HeldBytes.Add(float64(len(payload)))
	return true
}

// holdSubscribe holds a subscribe made by the server (the query's
// channels) as the op a client would send.
func (h *Handler) holdSubscribe(s *Session, name string, pos *broadcast.Position) {
	op := protocol.Command{Op: protocol.OpSubscribe, Channel: name}
	if pos != nil {
		op.Since, op.Epoch = &pos.Offset, pos.Epoch
	}
	b, _ := json.Marshal(op)
	h.hold(s, b)
}

// runHeld runs s's held ops in order until one makes it deciding again.
// s.mu is held.
func (h *Handler) runHeld(s *Session) {
	for !s.is(deciding) && !s.is(ended) {
		h.heldMu.Lock()
		held := h.held[s]
		var op []byte
		if held != nil && len(held.ops) > 0 {
			op = held.ops[0]
			held.ops[0] = nil
			held.ops = held.ops[1:]
			held.bytes -= len(op)
			h.heldBytes -= len(op)
		}
		if held != nil && len(held.ops) == 0 {
			delete(h.held, s)
		}
		h.heldMu.Unlock()
		if op == nil {
			return
		}
		h.proxyM.Held.Dec()
		h.proxyM.HeldBytes.Sub(float64(len(op)))
		cmd, err := protocol.ParseCommand(op)
		h.run(s, cmd, err)
	}
}

// dropHeld forgets an ended or shed session's held ops, and gives up the
// call they waited for. s.mu is held.
func (h *Handler) dropHeld(s *Session) {
	h.heldMu.Lock()
	held := h.held[s]
	delete(h.held, s)
	if held != nil {
		h.heldBytes -= held.bytes
	}
	h.heldMu.Unlock()
	if held == nil {
		return
	}
	h.proxyM.Held.Sub(float64(len(held.ops)))
	h.proxyM.HeldBytes.Sub(float64(held.bytes))
	if held.cancel != nil {
		held.cancel()
	}
}
