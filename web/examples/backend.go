// Command backend is a minimal backend for pushgate's hooks: it admits the
// connections whose session cookie it knows (--proxy-connect
// http://127.0.0.1:$PORT/connect) and prints the webhooks it receives
// (--webhook http://127.0.0.1:$PORT/webhook), once their signature checks.
//
//	PORT=8000 WEBHOOK_SECRET=… go run ./web/examples/backend.go
package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
)

var sessions = map[string]string{"s3cr3t-alice": "alice"} // session cookie → user

func main() {
	secret := []byte(os.Getenv("WEBHOOK_SECRET"))
	if len(secret) == 0 {
		log.Fatal("set WEBHOOK_SECRET: anyone can sign with an empty key")
	}
	http.HandleFunc("POST /connect", func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Headers map[string]string }
		json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req)
		cookies, _ := http.ParseCookie(req.Headers["Cookie"])
		for _, c := range cookies {
			if user := sessions[c.Value]; c.Name == "session" && user != "" {
				json.NewEncoder(w).Encode(map[string]any{"user": user, "channels": []string{"chat:*"}, "publish": []string{"chat:*"}})
				return
			}
		}
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"error":{"message":"log in first"}}`)
	})
	http.HandleFunc("POST /webhook", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		mac := hmac.New(sha256.New, secret)
		mac.Write(body)
		if !hmac.Equal([]byte(r.Header.Get("X-Pushgate-Signature")), []byte("sha256="+hex.EncodeToString(mac.Sum(nil)))) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var batch struct {
			Events []struct{ Type, User, Channel string }
		}
		json.Unmarshal(body, &batch)
		for _, e := range batch.Events {
			fmt.Println(e.Type, e.User+e.Channel)
		}
	})
	log.Fatal(http.ListenAndServe("127.0.0.1:"+os.Getenv("PORT"), nil))
}
