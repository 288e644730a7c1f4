package serve

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// JSON writes value as the whole answer, with its length.
func JSON(w http.ResponseWriter, status int, value any) {
	body, err := json.Marshal(value)
	if err != nil {
		body = []byte(`{"error":"internal error"}`)
		status = http.StatusInternalServerError
	}
	header := w.Header()
	header.Set("Content-Type", "application/json")
	header.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// Error answers {"error": message}.
func Error(w http.ResponseWriter, status int, message string) {
	JSON(w, status, map[string]string{"error": message})
}

// ErrorAndClose answers {"error": message} and closes the connection after it: what is left
// of the request on the connection (an unread body) cannot be trusted to frame the next one.
// The read deadline passes at once: otherwise the server would wait to discard a declared
// body that a client may never send.
func ErrorAndClose(w http.ResponseWriter, status int, message string) {
	_ = http.NewResponseController(w).SetReadDeadline(time.Now())
	w.Header().Set("Connection", "close")
	Error(w, status, message)
}
