package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// api is a JSON client of one of the services, through its Service's cluster IP.
type api struct {
	base   string
	hdr    map[string]string
	client *http.Client
}

var httpClient = &http.Client{Timeout: 20 * time.Second}

func newAPI(base string) api { return api{base: base, hdr: map[string]string{}, client: httpClient} }

func (a api) with(k, v string) api {
	h := map[string]string{}
	for hk, hv := range a.hdr {
		h[hk] = hv
	}
	h[k] = v
	a.hdr = h
	return a
}

// reply is a decoded response: the status, the envelope's data and message, the raw body.
type reply struct {
	Status  int
	Data    json.RawMessage
	Message string
	Raw     string
	Header  http.Header
}

func (r reply) String() string { return fmt.Sprintf("%d %s", r.Status, strings.TrimSpace(r.Raw)) }

// do sends body (marshalled) and decodes the envelope; err is a transport error.
func (a api) do(method, path string, body any) (reply, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return reply{}, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	if err != nil {
		return reply{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range a.hdr {
		req.Header.Set(k, v)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, err
	}
	r := reply{Status: resp.StatusCode, Raw: string(raw), Header: resp.Header}
	var env struct {
		Data    json.RawMessage `json:"data"`
		Message string          `json:"message"`
	}
	if err := json.Unmarshal(raw, &env); err == nil {
		r.Data, r.Message = env.Data, env.Message
	}
	return r, nil
}

// must sends and requires the status; the data is decoded into out (when not nil).
func (a api) must(t *testing.T, want int, method, path string, body, out any) reply {
	t.Helper()
	r, err := a.do(method, path, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	if r.Status != want {
		t.Fatalf("%s %s: got %s, want status %d", method, path, r, want)
	}
	if out != nil {
		if err := json.Unmarshal(r.Data, out); err != nil {
			t.Fatalf("%s %s: decode data: %v: %s", method, path, err, r.Raw)
		}
	}
	return r
}

// getJSON GETs url and decodes the whole body into out.
func getJSON(url string, out any) error {
	resp, err := httpClient.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return json.Unmarshal(b, out)
}

// postJSON POSTs v to url and expects a 2xx.
func postJSON(url string, v any) error {
	b, _ := json.Marshal(v)
	resp, err := httpClient.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST %s: %d %s", url, resp.StatusCode, body)
	}
	return nil
}

// eventually polls check every interval until it returns nil or timeout passes; it returns the
// last error.
func eventually(timeout, interval time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s: %w", timeout, err)
		}
		time.Sleep(interval)
	}
}

var errNotYet = errors.New("not yet")

// Catalogue and customer types, as the core returns them.
type booking struct {
	ID        string   `json:"_id"`
	UserID    string   `json:"userId"`
	ShowID    string   `json:"showId"`
	Seats     []string `json:"seats"`
	TotalCost float64  `json:"totalCost"`
	Status    string   `json:"status"`
}

type ticket struct {
	ID          string   `json:"_id"`
	Subject     string   `json:"subject"`
	Content     string   `json:"content"`
	Recipients  []string `json:"recepientEmails"`
	Status      string   `json:"status"`
	TraceParent string   `json:"traceparent"`
	Attempts    int      `json:"attempts"`
}

type delivery struct {
	ID       string    `json:"id"`
	TicketID string    `json:"ticket_id"`
	To       []string  `json:"to"`
	Subject  string    `json:"subject"`
	Text     string    `json:"text"`
	At       time.Time `json:"at"`
}

type fakeStats struct {
	Deliveries int            `json:"deliveries"`
	Replayed   int            `json:"replayed"`
	Duplicates map[string]int `json:"duplicates"`
}
