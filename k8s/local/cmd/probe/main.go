// Command probe GETs each URL given as an argument and prints one JSON line per URL: the URL, the
// status and the first bytes of the body (or the error). It exits 1 when any URL failed or did
// not answer 200. The end-to-end test runs it as a pod, to see the cluster from inside.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

type result struct {
	URL    string `json:"url"`
	Status int    `json:"status"`
	Body   string `json:"body,omitempty"`
	Error  string `json:"error,omitempty"`
}

func main() {
	client := &http.Client{Timeout: 10 * time.Second}
	failed := false
	for _, u := range os.Args[1:] {
		r := result{URL: u}
		resp, err := client.Get(u)
		if err != nil {
			r.Error = err.Error()
		} else {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			r.Status, r.Body = resp.StatusCode, string(b)
		}
		if r.Status != http.StatusOK {
			failed = true
		}
		line, _ := json.Marshal(r)
		fmt.Println(string(line))
	}
	if failed || len(os.Args) < 2 {
		os.Exit(1)
	}
}
