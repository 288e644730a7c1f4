package upstream

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

func answer(body string, length int64) *http.Response {
	return &http.Response{Body: io.NopCloser(strings.NewReader(body)), ContentLength: length}
}

func TestReadAnswerReadsWhatTheAnswerHolds(t *testing.T) {
	for _, length := range []int64{5, -1} {
		payload, err := ReadAnswer(answer("hello", length), 10)
		if err != nil || string(payload) != "hello" {
			t.Errorf("length %d: %q, %v", length, payload, err)
		}
	}
}

func TestReadAnswerReadsOneByteMoreThanAllowed(t *testing.T) {
	for _, length := range []int64{11, -1} {
		payload, err := ReadAnswer(answer("0123456789a", length), 10)
		if err != nil || len(payload) != 11 {
			t.Errorf("length %d: %d bytes, %v; want 11 (the caller's sign of too large)",
				length, len(payload), err)
		}
	}
}

func TestReadAnswerCutShortIsAnError(t *testing.T) {
	_, err := ReadAnswer(answer("hel", 5), 10)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("got %v, want an unexpected EOF", err)
	}
}
