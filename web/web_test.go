package web_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pushgate/pushgate/web"
)

func TestLandingPage(t *testing.T) {
	srv := httptest.NewServer(web.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(string(body), `new WebSocket(url, "pushgate.v1")`) {
		t.Fatalf("GET /: %s %s %.80q", resp.Status, resp.Header.Get("Content-Type"), body)
	}
	if resp, _ := http.Get(srv.URL + "/nothing-here"); resp.StatusCode != 404 {
		t.Fatalf("GET /nothing-here: %s", resp.Status)
	}
}
