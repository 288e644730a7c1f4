package router

import (
	"math"
	"testing"
)

// The Python router's positions (hashlib.blake2b(value, digest_size=8), big-endian / 2**64):
// a Go router keeps every user on the arm the Python one gave them.
func TestUnkeyedPositionsAreThePythonRoutersOnes(t *testing.T) {
	sticky, _ := NewSticky(nil)
	for value, digest := range map[string]uint64{
		"user-1": 11145382709976293768, "alice": 5614559425216174729,
		"": 16476032584258269876, "café": 6302685136992524259,
	} {
		want := float64(digest) / math.Exp2(64)
		if got := sticky.Position(value); got != want {
			t.Errorf("Position(%q) = %v, want %v", value, got, want)
		}
	}
	if got := sticky.Position("user-1"); got != 0.6041924073669338 {
		t.Errorf("Position(user-1) = %v, want the Python router's 0.6041924073669338", got)
	}
}

func TestAKeyMovesPositionsAndKeepsThemStable(t *testing.T) {
	plain, _ := NewSticky(nil)
	keyed, _ := NewSticky([]byte("0123456789abcdef0123456789abcdef"))
	other, _ := NewSticky([]byte("fedcba9876543210fedcba9876543210"))
	moved := 0
	for _, value := range []string{"a", "b", "c", "user-1", "user-2"} {
		if keyed.Position(value) != keyed.Position(value) {
			t.Fatal("a keyed position changed")
		}
		if keyed.Position(value) != plain.Position(value) && keyed.Position(value) != other.Position(value) {
			moved++
		}
	}
	if moved != 5 {
		t.Errorf("the key changed %d of 5 positions", moved)
	}
	if _, err := NewSticky(make([]byte, 65)); err == nil {
		t.Error("a 65-byte key was taken")
	}
}

func TestRaisingTheWeightOnlyMovesKeysToTheChallenger(t *testing.T) {
	sticky, _ := NewSticky([]byte("0123456789abcdef"))
	for i := range 2000 {
		value := string(rune('a'+i%26)) + string(rune(i))
		before := sticky.ChooseArm(10, value, true)
		after := sticky.ChooseArm(50, value, true)
		if before == Challenger && after != Challenger {
			t.Fatalf("%q moved back to the champion", value)
		}
	}
	if sticky.ChooseArm(0, "x", true) != Champion || sticky.ChooseArm(100, "x", true) != Challenger {
		t.Error("weights 0 and 100 are not absolute")
	}
}

func TestAgreementComparesNumbersWithinATolerance(t *testing.T) {
	primary, _ := firstOutput(200, []byte(`{"outputs":[{"data":[1, 0.5, "cat", [1,2]]}]}`))
	same, _ := firstOutput(200, []byte(`{"outputs":[{"data":[1.0, 0.5000000001, "cat", [1.0,2]]}]}`))
	other, _ := firstOutput(200, []byte(`{"outputs":[{"data":[1, 0.6, "cat", [1,2]]}]}`))
	if got := Agreement(primary, same, true, true); got != "agree" {
		t.Errorf("got %s", got)
	}
	if got := Agreement(primary, other, true, true); got != "disagree" {
		t.Errorf("got %s", got)
	}
	if _, ok := firstOutput(500, []byte(`{}`)); ok {
		t.Error("an error answer has outputs")
	}
	if got := Agreement(primary, nil, true, false); got != "error" {
		t.Errorf("got %s", got)
	}
}
