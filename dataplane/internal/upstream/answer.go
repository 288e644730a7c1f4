package upstream

import (
	"bytes"
	"io"
	"net/http"
)

// ReadAnswer reads at most limit+1 bytes of an answer (one more than allowed tells the caller
// it is too large), in one allocation when its length is known: io.ReadAll starts at 512
// bytes and grows.
func ReadAnswer(resp *http.Response, limit int64) ([]byte, error) {
	if resp.ContentLength < 0 || resp.ContentLength > limit {
		return io.ReadAll(io.LimitReader(resp.Body, limit+1))
	}
	buffer := make([]byte, resp.ContentLength)
	if _, err := io.ReadFull(resp.Body, buffer); err != nil {
		return nil, err // cut short: the transport's error says how
	}
	return buffer, nil
}

// SendWhole has the outgoing request carry body, which the proxy has read whole, as a reader
// net/http knows to be in memory. ReverseProxy wraps the body in a reader of its own, and
// net/http then writes the request's head and body in two writes: two TCP segments, and two
// wake-ups of the server for each request.
func SendWhole(out *http.Request, body []byte) {
	if out.Body == nil || len(body) == 0 || out.ContentLength != int64(len(body)) {
		return
	}
	out.Body = io.NopCloser(bytes.NewReader(body))
}
