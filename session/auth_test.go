package session_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pushgate/pushgate/auth"
	"github.com/pushgate/pushgate/internal/wstest"
)

var secret = []byte("0123456789abcdef0123456789abcdef-test")

func token(t testing.TB, key []byte, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func startAuth(t testing.TB, publish string) *gateway {
	t.Helper()
	v, err := auth.NewVerifier(auth.Config{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	return start(t, options{verifier: v, publish: publish})
}

func TestAuthRefusals(t *testing.T) {
	g := startAuth(t, "")
	good := jwt.MapClaims{"sub": "alice", "channels": []string{"news"}}
	expired := jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(-time.Hour).Unix()}
	for _, tc := range []struct {
		name, query, header string
	}{
		{"missing", "", ""},
		{"empty", "?token=", ""},
		{"malformed", "?token=not.a.jwt", ""},
		{"bad signature", "?token=" + token(t, []byte("another-secret-another-secret-xx"), good), ""},
		{"expired", "?token=" + token(t, secret, expired), ""},
		{"other scheme", "", "Authorization: Basic " + token(t, secret, good)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := wstest.Connect(t, g.addr)
			var extra []string
			if tc.header != "" {
				extra = append(extra, tc.header)
			}
			c.Write([]byte(wstest.UpgradeRequest("/ws"+tc.query, extra...)))
			resp := c.Response()
			if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
				t.Fatalf("got %s %v", resp.Status, resp.Header)
			}
		})
	}
	// The same token is accepted in the query and in the header.
	tok := token(t, secret, good)
	g.dial(t, "?token="+url.QueryEscape(tok)).ExpectMsg("subscribed", "")
	g.dial(t, "", "Authorization: Bearer "+tok).ExpectMsg("subscribed", "")
}

func TestTokenPermissions(t *testing.T) {
	g := startAuth(t, "lobby")
	tok := token(t, secret, jwt.MapClaims{
		"sub":      "alice",
		"channels": []string{"news", "chat:*"},
		"publish":  []string{"chat:*"},
	})
	c := g.dial(t, "?channels=news,sport&token="+tok)
	if m := c.ExpectMsg("subscribed", ""); m.Channel != "#alice" {
		t.Fatalf("first reply %s, want the personal channel", m.Raw)
	}
	if m := c.ExpectMsg("subscribed", ""); m.Channel != "news" {
		t.Fatalf("got %s", m.Raw)
	}
	if m := c.ExpectMsg("error", "forbidden"); m.Channel != "sport" {
		t.Fatalf("got %s", m.Raw)
	}
	for _, tc := range []struct{ send, typ, code string }{
		{`{"op":"subscribe","channel":"chat:42"}`, "subscribed", ""},
		{`{"op":"subscribe","channel":"lobby"}`, "error", "forbidden"}, // publish is not subscribe
		{`{"op":"subscribe","channel":"#bob"}`, "error", "forbidden"},
		{`{"op":"subscribe","channel":"#alice"}`, "error", "already_subscribed"},
		{`{"op":"publish","channel":"news","data":1}`, "error", "forbidden"},
		{`{"op":"publish","channel":"lobby","data":1}`, "", ""}, // --client-publish grants it
		{`{"op":"publish","channel":"chat:42","data":2}`, "message", ""},
	} {
		c.Send(tc.send)
		if tc.typ != "" {
			c.ExpectMsg(tc.typ, tc.code)
		}
	}
	// A token without publish rights cannot publish to chat rooms.
	reader := g.dial(t, "?token="+token(t, secret, jwt.MapClaims{"channels": []string{"chat:*"}}))
	reader.Send(`{"op":"publish","channel":"chat:42","data":1}`)
	reader.ExpectMsg("error", "forbidden")
}

// Publishing to a user reaches every connection of that user and no one
// else's.
func TestPublishToUser(t *testing.T) {
	g := startAuth(t, "")
	conn := func(user string) *wstest.Client {
		c := g.dial(t, "?token="+token(t, secret, jwt.MapClaims{"sub": user}))
		if m := c.ExpectMsg("subscribed", ""); m.Channel != "#"+user {
			t.Fatalf("got %s", m.Raw)
		}
		return c
	}
	alice1, alice2, bob := conn("alice"), conn("alice"), conn("bob")
	if res := g.publish(t, "#alice", `{"n":1}`); res.Delivered != 2 || res.Offset != 1 {
		t.Fatalf("publish to alice: %+v", res)
	}
	for _, c := range []*wstest.Client{alice1, alice2} {
		if m := c.ExpectMsg("message", ""); m.Channel != "#alice" || string(m.Data) != `{"n":1}` {
			t.Fatalf("got %s", m.Raw)
		}
	}
	g.publish(t, "#bob", `{"n":2}`)
	// bob's first message is his own: nothing of alice's reached him.
	if m := bob.ExpectMsg("message", ""); m.Channel != "#bob" {
		t.Fatalf("bob got %s", m.Raw)
	}
	// A reconnecting connection recovers its personal channel.
	g.publish(t, "#alice", `{"n":3}`)
	epoch := g.hub.History("#alice", 0).Epoch
	back := g.dial(t, fmt.Sprintf("?user_since=1&user_epoch=%s&token=%s", epoch, token(t, secret, jwt.MapClaims{"sub": "alice"})))
	if m := back.ExpectMsg("subscribed", ""); !m.Recovered || m.Offset != 2 {
		t.Fatalf("got %s", m.Raw)
	}
	if m := back.ExpectMsg("message", ""); m.Offset != 2 || string(m.Data) != `{"n":3}` {
		t.Fatalf("got %s", m.Raw)
	}
}

// A malformed query is reported, and the rest of the connection still
// works: the personal channel and the well-formed channels are subscribed.
func TestMalformedQuery(t *testing.T) {
	g := startAuth(t, "")
	tok := token(t, secret, jwt.MapClaims{"sub": "alice", "channels": []string{"news"}})
	c := g.dial(t, "?bad=%zz&channels=news&token="+tok)
	c.ExpectMsg("error", "bad_request")
	if m := c.ExpectMsg("subscribed", ""); m.Channel != "#alice" {
		t.Fatalf("got %s", m.Raw)
	}
	if m := c.ExpectMsg("subscribed", ""); m.Channel != "news" {
		t.Fatalf("got %s", m.Raw)
	}
}

// A connection whose token expires is closed with 4001 "token expired"
// soon after exp, without a timer of its own; until then it works.
func TestTokenExpiryCloses(t *testing.T) {
	g := startAuth(t, "")
	exp := wstest.ExpiresIn(time.Second)
	c := g.dial(t, "?token="+token(t, secret, jwt.MapClaims{"sub": "alice", "channels": []string{"news"}, "exp": exp}))
	c.ExpectMsg("subscribed", "")
	c.Send(`{"op":"subscribe","channel":"news"}`)
	c.ExpectMsg("subscribed", "")
	if reason := c.ExpectClose(4001); reason != "token expired" {
		t.Fatalf("close reason %q", reason)
	}
	if now := time.Now().Unix(); now < exp {
		t.Fatalf("closed at %d, before the token's exp %d", now, exp)
	}
}

// A leeway that is not whole seconds still holds: the connection is not
// closed before exp plus the leeway.
func TestTokenExpiryHonoursLeeway(t *testing.T) {
	const leeway = 900 * time.Millisecond
	v, err := auth.NewVerifier(auth.Config{Secret: secret, Leeway: leeway})
	if err != nil {
		t.Fatal(err)
	}
	g := start(t, options{verifier: v})
	exp := wstest.ExpiresIn(time.Second)
	c := g.dial(t, "?token="+token(t, secret, jwt.MapClaims{"sub": "alice", "exp": exp}))
	c.ExpectMsg("subscribed", "")
	c.ExpectClose(4001)
	if deadline := time.Unix(exp, 0).Add(leeway); time.Now().Before(deadline) {
		t.Fatalf("closed %v before exp plus leeway", time.Until(deadline))
	}
}

// refresh replaces the connection's token with a fresh one for the same
// user: the connection outlives the first token's exp. A token for
// another user, an expired or badly signed one, is refused with an error
// and changes nothing. Without authentication there is nothing to refresh.
func TestTokenRefresh(t *testing.T) {
	g := startAuth(t, "")
	// The first tokens leave a second or more for the three connections
	// and the seven round trips that must come before they expire.
	exp := wstest.ExpiresIn(time.Second)
	short := func(user string) string {
		return token(t, secret, jwt.MapClaims{"sub": user, "channels": []string{"news"}, "exp": exp})
	}
	refreshed := g.dial(t, "?token="+short("alice"))
	refused := g.dial(t, "?token="+short("alice"))
	control := g.dial(t, "?token="+short("alice"))
	for _, c := range []*wstest.Client{refreshed, refused, control} {
		c.ExpectMsg("subscribed", "")
	}

	later := time.Now().Add(time.Hour).Unix()
	refreshed.Send(`{"op":"refresh","token":"` + token(t, secret, jwt.MapClaims{"sub": "alice", "channels": []string{"news"}, "exp": later}) + `"}`)
	var got struct {
		Type    string `json:"type"`
		Expires int64  `json:"expires"`
	}
	m := refreshed.ReadMsg()
	if err := json.Unmarshal(m.Raw, &got); err != nil || got.Type != "refreshed" || got.Expires != later {
		t.Fatalf("refresh answered %s, want refreshed with expires %d", m.Raw, later)
	}

	for _, tc := range []struct{ name, token, code string }{
		{"another user", token(t, secret, jwt.MapClaims{"sub": "bob", "exp": later}), "forbidden"},
		{"expired", token(t, secret, jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(-time.Minute).Unix()}), "invalid_token"},
		{"bad signature", token(t, []byte("another-secret-another-secret-xx"), jwt.MapClaims{"sub": "alice", "exp": later}), "invalid_token"},
		{"not a token", "garbage", "invalid_token"},
		{"missing", "", "invalid_token"},
	} {
		refused.Send(`{"op":"refresh","token":"` + tc.token + `"}`)
		if m := refused.ExpectMsg("error", tc.code); m.Message == "" {
			t.Errorf("%s: error without a message", tc.name)
		}
	}
	// The refused refreshes changed nothing: that connection goes at the
	// first token's exp, with the control that never refreshed.
	refused.ExpectClose(4001)
	control.ExpectClose(4001)
	// One more sweep after theirs: a connection whose token expires a
	// second later is closed too...
	last := g.dial(t, "?token="+token(t, secret, jwt.MapClaims{"sub": "carol", "exp": wstest.ExpiresIn(time.Second)}))
	last.ExpectMsg("subscribed", "")
	last.ExpectClose(4001)
	// ... and the refreshed one was passed over: it still works.
	refreshed.Send(`{"op":"subscribe","channel":"news"}`)
	refreshed.ExpectMsg("subscribed", "")

	open := start(t, options{})
	c := open.dial(t, "")
	c.Send(`{"op":"refresh","token":"x"}`)
	c.ExpectMsg("error", "bad_request")
}
