package receipt

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var (
	t0     = time.Unix(1_800_000_000, 0)
	week   = 7 * 24 * time.Hour
	keyOne = Key{ID: "k1", Secret: []byte("0123456789abcdef0123456789abcdef"), ActiveFrom: t0.Unix() - 3600}
	keyTwo = Key{ID: "k2", Secret: []byte("fedcba9876543210fedcba9876543210"), ActiveFrom: t0.Unix() + 600}
)

func ring(t *testing.T, keys ...Key) *KeyRing {
	t.Helper()
	data, err := json.Marshal(ringDocument{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParseKeyRing(data)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func sample() Receipt {
	return Receipt{Deployment: "fraud", Version: "1.1.0", Role: "challenger", RequestID: "req-1",
		Issued: t0.Unix(), Prediction: []json.RawMessage{json.RawMessage("1"), json.RawMessage(`"cat"`)}}
}

func TestARoundTripGivesBackWhatWasSigned(t *testing.T) {
	token, err := Sign(keyOne, sample())
	if err != nil {
		t.Fatal(err)
	}
	got, failure := Verify(ring(t, keyOne), token, t0.Add(time.Hour), week, "fraud")
	if failure != "" {
		t.Fatalf("refused: %s", failure)
	}
	if got.RequestID != "req-1" || got.Role != "challenger" || got.Version != "1.1.0" ||
		string(got.Prediction[1]) != `"cat"` {
		t.Fatalf("got %+v", got.Receipt)
	}
}

// Every way a client can get it wrong, or try to, is refused with its own reason.
func TestForgedAlteredExpiredAndMalformedReceiptsAreRefused(t *testing.T) {
	token, _ := Sign(keyOne, sample())
	parts := strings.Split(token, ".")
	flattering := sample()
	flattering.Role = "champion"
	otherPayload, _ := json.Marshal(flattering)
	stolenKey := Key{ID: "k1", Secret: []byte("not-the-real-secret-at-all-00000")}
	forged, _ := Sign(stolenKey, flattering)
	oldReceipt := sample()
	oldReceipt.Issued = t0.Add(-8 * 24 * time.Hour).Unix()
	old, _ := Sign(keyOne, oldReceipt)
	futureReceipt := sample()
	futureReceipt.Issued = t0.Add(time.Hour).Unix()
	future, _ := Sign(keyOne, futureReceipt)
	cases := map[string]struct {
		token string
		want  Failure
	}{
		"empty":              {"", Malformed},
		"not a token":        {"hello", Malformed},
		"other version":      {"v2." + strings.Join(parts[1:], "."), Malformed},
		"mac not base64":     {strings.Join(parts[:3], ".") + ".!!!", Malformed},
		"mac cut short":      {strings.Join(parts[:3], ".") + "." + parts[3][:20], Malformed},
		"too long":           {token + strings.Repeat("A", MaxTokenBytes), Malformed},
		"unknown key":        {"v1.k9." + parts[2] + "." + parts[3], UnknownKey},
		"payload swapped":    {"v1.k1." + encoding.EncodeToString(otherPayload) + "." + parts[3], BadSignature},
		"signed with a fake": {forged, BadSignature},
		"older than maxAge":  {old, Expired},
		"from the future":    {future, FromTheFuture},
	}
	for name, c := range cases {
		if _, failure := Verify(ring(t, keyOne), c.token, t0, week, "fraud"); failure != c.want {
			t.Errorf("%s: got %q, want %q", name, failure, c.want)
		}
	}
	if _, failure := Verify(ring(t, keyOne), token, t0, week, "other"); failure != OtherDeployment {
		t.Errorf("another deployment's receipt: got %q", failure)
	}
}

// A key is verified by every replica before any replica signs with it, and old receipts stay
// valid while their key is in the ring.
func TestRotationSignsWithTheActiveKeyAndVerifiesEveryKeyInTheRing(t *testing.T) {
	r := ring(t, keyTwo, keyOne) // any order in the document
	if k, _ := r.Signing(t0); k.ID != "k1" {
		t.Fatalf("before k2 is active: %s", k.ID)
	}
	if k, _ := r.Signing(t0.Add(time.Hour)); k.ID != "k2" {
		t.Fatalf("after: %s", k.ID)
	}
	if _, ok := ring(t, keyTwo).Signing(t0); ok {
		t.Fatal("no key is active yet: nothing must be signed")
	}
	early, _ := Sign(keyOne, sample())
	later, _ := Sign(keyTwo, sample())
	for _, token := range []string{early, later} {
		if _, failure := Verify(r, token, t0.Add(time.Hour), week, "fraud"); failure != "" {
			t.Fatalf("refused: %s", failure)
		}
	}
}

func TestAKeyRingMustBeComplete(t *testing.T) {
	for name, doc := range map[string]string{
		"not json":     "{",
		"no key":       `{"keys": []}`,
		"bad id":       `{"keys": [{"id": "K 1", "secret": "MDEyMzQ1Njc4OWFiY2RlZg==", "activeFrom": 0}]}`,
		"short secret": `{"keys": [{"id": "k1", "secret": "MDEy", "activeFrom": 0}]}`,
		"twice": `{"keys": [{"id": "k1", "secret": "MDEyMzQ1Njc4OWFiY2RlZg==", "activeFrom": 0},` +
			`{"id": "k1", "secret": "MDEyMzQ1Njc4OWFiY2RlZg==", "activeFrom": 1}]}`,
	} {
		if _, err := ParseKeyRing([]byte(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestTheRingFileFollowsTheSecretAndKeepsTheLastGoodRing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "receipt-keys.json")
	write := func(doc string) {
		// As the kubelet does: a new file renamed over the old one.
		tmp := filepath.Join(dir, "tmp")
		if err := os.WriteFile(tmp, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	one, _ := json.Marshal(ringDocument{Keys: []Key{keyOne}})
	both, _ := json.Marshal(ringDocument{Keys: []Key{keyOne, keyTwo}})
	write(string(one))
	file, err := OpenRingFile(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := file.Current(t0).ByID("k2"); ok {
		t.Fatal("k2 before it was written")
	}
	write(string(both))
	if _, ok := file.Current(t0).ByID("k2"); !ok {
		t.Fatal("the new key was not read")
	}
	write("{broken")
	if _, ok := file.Current(t0).ByID("k2"); !ok || file.Problem() == "" {
		t.Fatal("a broken file must leave the last good ring and say why")
	}
	if _, err := OpenRingFile(filepath.Join(dir, "absent"), 0); err == nil {
		t.Fatal("a missing file at start must be an error")
	}
}

func TestALabelCountsOncePerReplicaWithinTheBound(t *testing.T) {
	seen := NewSeen(2)
	verified := func(id string) Verified {
		r := sample()
		r.RequestID = id
		token, _ := Sign(keyOne, r)
		v, failure := Verify(ring(t, keyOne), token, t0, week, "fraud")
		if failure != "" {
			t.Fatal(failure)
		}
		return v
	}
	a, b, c := verified("a"), verified("b"), verified("c")
	if first, _ := seen.FirstTime(a, week, t0); !first {
		t.Fatal("a is new")
	}
	if first, _ := seen.FirstTime(a, week, t0); first {
		t.Fatal("a again must be a duplicate")
	}
	seen.FirstTime(b, week, t0)
	// Full: the third forgets the one closest to expiry, and says so.
	if first, evicted := seen.FirstTime(c, week, t0); !first || evicted != 1 || seen.Len() != 2 {
		t.Fatalf("first=%v evicted=%d len=%d", first, evicted, seen.Len())
	}
	// Expired receipts leave by themselves (they are refused as expired anyway).
	if first, evicted := seen.FirstTime(a, week, t0.Add(8*24*time.Hour)); !first || evicted != 0 || seen.Len() != 1 {
		t.Fatalf("first=%v evicted=%d len=%d", first, evicted, seen.Len())
	}
}
