package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pushgate/pushgate/internal/proctest"
	"github.com/pushgate/pushgate/internal/wstest"
)

// The Steering connections section's curl commands answer what the README
// shows, with the gateway it names and alice connected to chat:lobby, and
// alice's connection gets what they say.
func TestReadmeSteering(t *testing.T) {
	proctest.Program(t, "curl")
	section := readmeSection(t, "Steering connections")
	if !strings.Contains(section, "--jwt-secret-file secret\n--presence 'chat:*'") {
		t.Fatal("README Steering connections: the gateway's flags are not those this test runs")
	}
	cmds := shellCommands(section, "curl ")
	if len(cmds) != 6 {
		t.Fatalf("README Steering connections: want 6 curl commands, have %q", cmds)
	}
	secret := strings.Repeat("s", 32)
	addr, admin := proctest.FreeAddr(t), proctest.FreeAddr(t)
	g := proctest.Start(t, "", proctest.Gateway(t), "--addr", addr, "--admin-addr", admin, "--jwt-secret", secret, "--presence", "chat:*")
	g.WaitHTTP(t, "http://"+admin+"/readyz", http.StatusOK)
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "alice", "channels": []string{"chat:*"}, "info": map[string]string{"name": "Alice"}}).
		SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	alice, _ := wstest.Dial(t, addr, "/ws?channels=chat:lobby&token="+tok, "Sec-WebSocket-Protocol: pushgate.v1")
	alice.ExpectMsg("subscribed", "") // #alice
	alice.ExpectMsg("subscribed", "") // chat:lobby
	alice.ExpectMsg("join", "")
	for _, c := range cmds {
		if c[1] == "" {
			t.Fatalf("README shows no answer to %s", c[0])
		}
		checkAnswer(t, c[0], runShell(t, "", c[0], "localhost:9090", admin), c[1])
	}
	if m := alice.ExpectMsg("subscribed", ""); m.Channel != "news" {
		t.Fatalf("got %s", m.Raw)
	}
	if m := alice.ExpectMsg("unsubscribed", ""); m.Channel != "news" {
		t.Fatalf("got %s", m.Raw)
	}
	if reason := alice.ExpectClose(4003); reason != "banned" {
		t.Fatalf("closed with reason %q", reason)
	}
}
