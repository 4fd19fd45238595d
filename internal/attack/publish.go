package attack

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Publisher publishes through the gateway's admin API.
type Publisher struct {
	// URL is the publish endpoint, http://<admin>/api/publish.
	URL string
	// Key is the API key, when the gateway has one.
	Key string
	// Client makes the requests (default: one with a 30s timeout).
	Client *http.Client `json:"-"`
}

// Publish publishes data (JSON) to channel and waits for the answer.
func (p *Publisher) Publish(ctx context.Context, channel string, data []byte) error {
	body, err := json.Marshal(struct {
		Channel string          `json:"channel"`
		Data    json.RawMessage `json:"data"`
	}{channel, data})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if p.Key != "" {
		req.Header.Set("Authorization", "Bearer "+p.Key)
	}
	client := p.Client
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		return fmt.Errorf("publish: %s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return nil
}

// Drive publishes size bytes of data to channel rate times a second until
// ctx ends, with at most 16 publishes waiting for their answer (a publish
// due while all 16 wait is skipped). It counts what the gateway took in
// st.Messages, what it refused in st.Refused.
func (p *Publisher) Drive(ctx context.Context, channel string, size int, rate float64, st *Stats) {
	data := []byte(`"` + strings.Repeat("s", max(0, size-2)) + `"`)
	slots := make(chan struct{}, 16)
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			for range cap(slots) {
				slots <- struct{}{} // wait for those in flight
			}
			return
		case <-tick.C:
		}
		select {
		case slots <- struct{}{}:
		default:
			continue
		}
		go func() {
			defer func() { <-slots }()
			if err := p.Publish(ctx, channel, data); err != nil {
				if ctx.Err() == nil {
					st.Refused.Add(1)
				}
				return
			}
			st.Messages.Add(1)
			st.Bytes.Add(int64(len(data)))
		}()
	}
}
