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

type wrapped struct{ io.Reader }

func (wrapped) Close() error { return nil }

func TestSendWholeHandsNetHTTPTheBodyAsInMemory(t *testing.T) {
	body := []byte(`{"inputs":[]}`)
	out := &http.Request{Body: wrapped{strings.NewReader(string(body))},
		ContentLength: int64(len(body))}
	SendWhole(out, body)
	sent, err := io.ReadAll(out.Body)
	if err != nil || string(sent) != string(body) {
		t.Fatalf("sent %q, %v", sent, err)
	}
	if _, still := out.Body.(wrapped); still {
		t.Fatal("the body is still the wrapper net/http cannot see through")
	}
	for _, keep := range []*http.Request{
		{Body: nil, ContentLength: 0},                             // no body
		{Body: wrapped{strings.NewReader("x")}, ContentLength: 1}, // another length
		{Body: wrapped{strings.NewReader("")}, ContentLength: -1}, // unknown length
	} {
		before := keep.Body
		SendWhole(keep, body)
		if keep.Body != before {
			t.Errorf("the body of a request with length %d was replaced", keep.ContentLength)
		}
	}
}
