// Package receipt signs what a prediction was, so that its label can be scored later by any
// replica of the arm that made it, after any restart, with no stored prediction.
//
// The sidecar answers each inference call with a receipt in X-Modelops-Receipt: the
// deployment, arm, model version, request id, time and prediction, signed with the
// deployment's current key (HMAC-SHA256). A client sends the receipt back with the label.
// The proxy that gets it checks the signature and the age and scores the label against the
// prediction the receipt carries. A forged, altered, expired or malformed receipt is refused
// and never counted; a replayed one is refused by the replica that saw it first (Seen).
//
// Token: "v1.<key id>.<payload>.<mac>", payload and mac in unpadded base64url, the mac over
// everything before its dot. The payload is compact JSON with one-letter fields.
package receipt

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// Version is the token format's first field.
const Version = "v1"

// MaxTokenBytes bounds a token as it arrives (a header or a JSON field): 64 predicted values
// of any JSON type fit comfortably, anything longer is not one of ours.
const MaxTokenBytes = 8192

// MaxPredictionValues is how many values of the first output a receipt carries (the sidecar's
// scoring reads at most as many).
const MaxPredictionValues = 64

// ClockSkew is how far in the future a receipt's time may be (replicas' clocks differ).
const ClockSkew = 5 * time.Minute

var encoding = base64.RawURLEncoding

// Receipt is what a prediction was, as the sidecar that made it saw it.
type Receipt struct {
	Deployment string            `json:"d"`
	Version    string            `json:"v"`
	Role       string            `json:"r"`
	RequestID  string            `json:"i"`
	Issued     int64             `json:"t"` // unix seconds
	Prediction []json.RawMessage `json:"p"`
	// Classes (integers, booleans, strings) are scored right or wrong, other values by their
	// error: the sidecar that scores the label may not see the answer's datatype.
	Classification bool `json:"c,omitempty"`
	// The replica that answered (X-Modelops-Served-By): the router sends the label there, so
	// the replica that remembers having scored it sees a replay.
	ServedBy string `json:"s,omitempty"`
}

// Sign returns the token of r under key.
func Sign(key Key, r Receipt) (string, error) {
	if len(r.Prediction) > MaxPredictionValues {
		r.Prediction = r.Prediction[:MaxPredictionValues]
	}
	payload, err := json.Marshal(r)
	if err != nil {
		return "", err
	}
	signed := Version + "." + key.ID + "." + encoding.EncodeToString(payload)
	token := signed + "." + encoding.EncodeToString(mac(key.Secret, signed))
	if len(token) > MaxTokenBytes {
		return "", errors.New("receipt longer than MaxTokenBytes")
	}
	return token, nil
}

func mac(secret []byte, signed string) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(signed))
	return h.Sum(nil)
}

// Failure says why a token was refused; each is counted apart, and each is the client's fault
// (a 4xx), never a reason to consume anything.
type Failure string

const (
	Malformed       Failure = "malformed"        // not a token of this format
	UnknownKey      Failure = "unknown_key"      // signed with a key this deployment never had, or long retired
	BadSignature    Failure = "forged"           // altered or forged
	Expired         Failure = "expired"          // older than the deployment's maxDelay
	FromTheFuture   Failure = "future"           // issued later than now plus ClockSkew
	OtherDeployment Failure = "other_deployment" // a valid receipt of another ModelDeployment
)

// Verified is a receipt whose signature and age were checked, with its MAC: the identity the
// duplicate check keys on.
type Verified struct {
	Receipt
	MAC [32]byte
}

// Verify checks token against ring at now: format, key, signature, age (at most maxAge) and
// deployment. The checks that need no key come first, so garbage costs no HMAC.
func Verify(ring *KeyRing, token string, now time.Time, maxAge time.Duration,
	deployment string) (Verified, Failure) {
	if len(token) > MaxTokenBytes {
		return Verified{}, Malformed
	}
	parts := strings.Split(token, ".")
	if len(parts) != 4 || parts[0] != Version {
		return Verified{}, Malformed
	}
	sum, err := encoding.DecodeString(parts[3])
	if err != nil || len(sum) != sha256.Size {
		return Verified{}, Malformed
	}
	key, found := ring.ByID(parts[1])
	if !found {
		return Verified{}, UnknownKey
	}
	signed := token[:len(token)-len(parts[3])-1]
	if !hmac.Equal(sum, mac(key.Secret, signed)) {
		return Verified{}, BadSignature
	}
	// Signed by us: what follows can only fail on a bug or an old format, not on a client.
	payload, err := encoding.DecodeString(parts[2])
	if err != nil {
		return Verified{}, Malformed
	}
	var v Verified
	if err := json.Unmarshal(payload, &v.Receipt); err != nil {
		return Verified{}, Malformed
	}
	copy(v.MAC[:], sum)
	issued := time.Unix(v.Issued, 0)
	if issued.After(now.Add(ClockSkew)) {
		return Verified{}, FromTheFuture
	}
	if now.Sub(issued) > maxAge {
		return Verified{}, Expired
	}
	if v.Deployment != deployment {
		return Verified{}, OtherDeployment
	}
	return v, ""
}
