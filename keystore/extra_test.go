package keystore

import (
	"bytes"
	"os"
	"testing"
)

func TestSettingsAndLargeBlobArray(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, Options{})
	if st, err := s.Settings(); err != nil || st.AlwaysUV || st.MinPINLengthRPIDs != nil {
		t.Fatalf("default settings %+v %v", st, err)
	}
	if a, err := s.LargeBlobArray(); err != nil || !bytes.Equal(a, emptyLargeBlobArray) {
		t.Fatalf("default array %x %v", a, err)
	}
	if err := s.UpdateSettings(func(st *Settings) error { st.AlwaysUV = true; st.MinPINLengthRPIDs = []string{"a.example"}; return nil }); err != nil {
		t.Fatal(err)
	}
	secret := bytes.Repeat([]byte("large-blob-secret"), 10)
	if err := s.SetLargeBlobArray(secret); err != nil {
		t.Fatal(err)
	}
	s.Close()
	raw, _ := os.ReadFile(e.dbPath())
	if bytes.Contains(raw, []byte("large-blob-secret")) {
		t.Fatal("large-blob array stored in clear")
	}
	s = e.open(t, Options{})
	if st, _ := s.Settings(); !st.AlwaysUV || len(st.MinPINLengthRPIDs) != 1 {
		t.Fatalf("settings after reopen %+v", st)
	}
	if a, _ := s.LargeBlobArray(); !bytes.Equal(a, secret) {
		t.Fatal("array after reopen")
	}
	// Reset erases both.
	if err := s.Wipe(); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.Settings(); st.AlwaysUV {
		t.Fatal("settings survived Wipe")
	}
	if a, _ := s.LargeBlobArray(); !bytes.Equal(a, emptyLargeBlobArray) {
		t.Fatal("array survived Wipe")
	}
	s.Close()
	if _, err := s.Settings(); err == nil {
		t.Fatal("Settings after Close")
	}
}

// TestSettingsCache: settings are served from memory between writes, and a
// write or a Wipe is seen at once.
func TestSettingsCache(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, Options{})
	defer s.Close()
	for i := 0; i < 3; i++ {
		if err := s.UpdateSettings(func(st *Settings) error { st.AlwaysUV = !st.AlwaysUV; return nil }); err != nil {
			t.Fatal(err)
		}
		st, _ := s.Settings()
		st2, _ := s.Settings()
		if st.AlwaysUV != (i%2 == 0) || st2.AlwaysUV != st.AlwaysUV {
			t.Fatalf("round %d: %v %v", i, st.AlwaysUV, st2.AlwaysUV)
		}
	}
	// Callers cannot change the cached copy.
	s.UpdateSettings(func(st *Settings) error { st.MinPINLengthRPIDs = []string{"a"}; return nil })
	st, _ := s.Settings()
	st.MinPINLengthRPIDs[0] = "changed"
	if again, _ := s.Settings(); again.MinPINLengthRPIDs[0] != "a" {
		t.Fatal("cache shared with a caller")
	}
	if err := s.Wipe(); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.Settings(); st.AlwaysUV || len(st.MinPINLengthRPIDs) != 0 {
		t.Fatalf("settings after Wipe: %+v", st)
	}
}
