package upstream

import (
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
