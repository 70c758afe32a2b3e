package cluster

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
)

func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func TestNewSealerKeyLength(t *testing.T) {
	for _, n := range []int{0, 16, 24, 31, 33, 64} {
		if _, err := NewSealer(make([]byte, n)); err == nil || !strings.Contains(err.Error(), "32 bytes") {
			t.Errorf("key of %d bytes: err = %v, want one saying 32 bytes", n, err)
		}
	}
	if _, err := NewSealer(testKey(1)); err != nil {
		t.Fatalf("32-byte key: %v", err)
	}
}

func TestSealRoundTrip(t *testing.T) {
	s, err := NewSealer(testKey(7))
	if err != nil {
		t.Fatal(err)
	}
	cfg := json.RawMessage(`{"password":"hunter2","token":{"a":[1,2]},"queue":"q1","n":3}`)
	sealed, err := s.Seal(cfg, []string{"password", "token", "absent"})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("hunter2")) || bytes.Contains(sealed, []byte(`[1,2]`)) {
		t.Fatalf("sealed config still holds a secret: %s", sealed)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(sealed, &obj); err != nil {
		t.Fatal(err)
	}
	if string(obj["queue"]) != `"q1"` || string(obj["n"]) != `3` {
		t.Errorf("non-sensitive attributes changed: %s", sealed)
	}
	if _, ok := obj["absent"]; ok {
		t.Errorf("an absent attribute was added: %s", sealed)
	}
	var box map[string]string
	if err := json.Unmarshal(obj["password"], &box); err != nil || box["$sealed"] == "" {
		t.Fatalf("password is not a sealed box: %s", obj["password"])
	}
	// A fresh nonce each time: sealing twice gives other ciphertexts.
	again, _ := s.Seal(cfg, []string{"password"})
	var obj2 map[string]json.RawMessage
	_ = json.Unmarshal(again, &obj2)
	if bytes.Equal(obj2["password"], obj["password"]) {
		t.Error("two seals of one value are equal: the nonce is not fresh")
	}

	opened, err := s.Open(sealed, []string{"password", "token", "absent"})
	if err != nil {
		t.Fatal(err)
	}
	var want, got any
	_ = json.Unmarshal(cfg, &want)
	_ = json.Unmarshal(opened, &got)
	if wb, _ := json.Marshal(want); string(wb) != mustJSON(t, got) {
		t.Errorf("open(seal(cfg)) = %s, want %s", opened, cfg)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSealWrongKeyAndTamper(t *testing.T) {
	s1, _ := NewSealer(testKey(1))
	s2, _ := NewSealer(testKey(2))
	sealed, err := s1.Seal(json.RawMessage(`{"password":"hunter2"}`), []string{"password"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s2.Open(sealed, []string{"password"})
	if err == nil || !strings.Contains(err.Error(), `"password"`) || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("open with another key: err = %v, want one naming the attribute and not the value", err)
	}

	// Flip one ciphertext bit.
	var obj map[string]map[string]string
	_ = json.Unmarshal(sealed, &obj)
	raw, _ := base64.StdEncoding.DecodeString(obj["password"]["$sealed"])
	raw[len(raw)-1] ^= 1
	obj["password"]["$sealed"] = base64.StdEncoding.EncodeToString(raw)
	tampered, _ := json.Marshal(obj)
	if _, err := s1.Open(tampered, []string{"password"}); err == nil || !strings.Contains(err.Error(), `"password"`) {
		t.Fatalf("open of a tampered value: err = %v, want one naming the attribute", err)
	}

	// A sealed value moved to another attribute does not open (the name
	// is the additional data).
	var orig map[string]json.RawMessage
	_ = json.Unmarshal(sealed, &orig)
	swapped, _ := json.Marshal(map[string]json.RawMessage{"other": orig["password"]})
	if _, err := s1.Open(swapped, []string{"other"}); err == nil || !strings.Contains(err.Error(), `"other"`) {
		t.Fatalf("open of a value moved to another attribute: err = %v", err)
	}

	// Not sealed at all.
	if _, err := s1.Open(json.RawMessage(`{"password":"plain"}`), []string{"password"}); err == nil || strings.Contains(err.Error(), "plain") {
		t.Fatalf("open of an unsealed value: err = %v", err)
	}
	// Not an object.
	if _, err := s1.Seal(json.RawMessage(`[1]`), []string{"a"}); err == nil {
		t.Fatal("seal of a non-object: no error")
	}
}
