package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/pushgate/pushgate/webhook"
)

// A backend written in Go checks the signature over the raw body before
// parsing it.
func ExampleVerify() {
	secret := []byte("the secret shared with the gateways")

	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		if !webhook.Verify(secret, body, r.Header.Get(webhook.SignatureHeader)) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var batch webhook.Batch
		if err := json.Unmarshal(body, &batch); err != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		for _, ev := range batch.Events {
			switch ev.Type {
			case webhook.UserOnline, webhook.UserOffline:
				fmt.Println(ev.User, ev.Type, "on", ev.Node, "seq", ev.Seq)
			case webhook.ChannelOccupied, webhook.ChannelVacated:
				fmt.Println(ev.Channel, ev.Type, "on", ev.Node, "seq", ev.Seq)
			}
		}
		w.WriteHeader(http.StatusNoContent) // any 2xx: delivered
	})

	// A POST as a gateway sends it, then a forged one.
	body := []byte(`{"events":[` +
		`{"type":"user_online","time":1700000000000,"node":"gw-1","seq":17,"user":"alice"},` +
		`{"type":"channel_vacated","time":1700000000042,"node":"gw-1","seq":9,"channel":"chat:42"}]}`)
	for _, signature := range []string{webhook.Sign(secret, body), webhook.Sign([]byte("a guess"), body)} {
		req := httptest.NewRequest(http.MethodPost, "/hooks/pushgate", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(webhook.SignatureHeader, signature)
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		fmt.Println(rec.Code)
	}
	// Output:
	// alice user_online on gw-1 seq 17
	// chat:42 channel_vacated on gw-1 seq 9
	// 204
	// 401
}

// A gateway sends its events through one Sender, and closes it on
// shutdown to deliver what is still queued.
func ExampleSender() {
	sender, err := webhook.New(webhook.Config{
		URL:    "https://backend.example/hooks/pushgate",
		Secret: []byte("the secret shared with the backend"),
	})
	if err != nil {
		log.Fatal(err)
	}
	sender.Send(webhook.Event{
		Type: webhook.UserOnline,
		Time: time.Now().UnixMilli(),
		Node: "gw-1",
		Seq:  17, // the revision of alice's presence that this event reports
		User: "alice",
	})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sender.Close(ctx); err != nil {
		log.Print(err) // webhook: events undelivered: 1 events
	}
}

// SendThen tells when an event has reached the backend, here to let a
// shutdown wait for a last event. The callback runs on the delivery
// goroutine and must not block: it only hands the news on.
func ExampleSender_SendThen() {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	defer backend.Close()
	sender, err := webhook.New(webhook.Config{
		URL:    backend.URL,
		Secret: []byte("the secret shared with the backend"),
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	defer sender.Close(ctx)

	delivered := make(chan struct{})
	ev := webhook.Event{
		Type: webhook.UserOffline,
		Time: time.Now().UnixMilli(),
		Node: "gw-1",
		Seq:  18,
		User: "alice",
	}
	if !sender.SendThen(ev, func() { close(delivered) }) {
		fmt.Println("dropped: the queue is full")
		return
	}
	select {
	case <-delivered:
		fmt.Println("delivered")
	case <-ctx.Done():
		fmt.Println("not delivered yet")
	}
	// Output: delivered
}
