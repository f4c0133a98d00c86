package uv

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd/uv/pinentry"
)

// fakePinentry is a pinentry in sh: it logs each command line to
// $FAKE_DIR/log and answers CONFIRM with $FAKE_CONFIRM (printf %b; SLEEP: a
// long sleep, its pid in $FAKE_DIR/child), everything else with OK.
const fakePinentry = `#!/bin/sh
d="$FAKE_DIR"
echo $$ > "$d/pid.tmp" && mv "$d/pid.tmp" "$d/pid"
echo "OK Pleased to meet you"
while IFS= read -r line; do
	printf '%s\n' "$line" >> "$d/log"
	case "$line" in
	CONFIRM)
		case "$FAKE_CONFIRM" in
		SLEEP) sleep 100000 & echo $! > "$d/child.tmp" && mv "$d/child.tmp" "$d/child"; wait ;;
		EXIT) exit 4 ;;
		*) printf '%b\n' "$FAKE_CONFIRM" ;;
		esac ;;
	BYE) echo "OK closing connection"; exit 0 ;;
	*) echo OK ;;
	esac
done
`

// newFakePinentry writes the fake and returns a presence using it and its
// directory.
func newFakePinentry(t *testing.T, confirm string) (PinentryPresence, string) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "pinentry")
	if err := os.WriteFile(path, []byte(fakePinentry), 0o755); err != nil {
		t.Fatal(err)
	}
	log, _ := testLogger()
	return PinentryPresence{
		Program: pinentry.Program{Path: path, Env: []string{"FAKE_DIR=" + dir, "FAKE_CONFIRM=" + confirm, "GPG_TTY="}},
		Logger:  log,
	}, dir
}

func fakeLog(t *testing.T, dir string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	cmds := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		verb, arg, _ := strings.Cut(l, " ")
		cmds[verb] = arg
	}
	return cmds
}

func TestPinentryPresenceAnswers(t *testing.T) {
	for _, tt := range []struct {
		name, answer string
		want         error // nil: approved
	}{
		{"allow", "OK", nil},
		{"deny", "ERR 83886179 Operation cancelled <Pinentry>", ErrDeclined},
		{"not confirmed", "ERR 83886194 Not confirmed <Pinentry>", ErrDeclined},
		{"other error", "ERR 83886081 General error", ErrDeclined},
		{"garbage", "sure, why not", ErrDeclined},
		{"pinentry dies", "EXIT", ErrDeclined},
		{"pinentry's own timeout", "ERR 83886142 Timeout <Pinentry>", context.DeadlineExceeded},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, dir := newFakePinentry(t, tt.answer)
			err := p.ConfirmPresence(testCtx(t), OpGetAssertion, "example.com", "alice")
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("ConfirmPresence = %v, want %v", err, tt.want)
			}
			if tt.want == context.DeadlineExceeded && errors.Is(err, ErrDeclined) {
				t.Errorf("a timeout must not read as declined: %v", err)
			}
			cmds := fakeLog(t, dir)
			want := map[string]string{
				"SETTITLE":   "authd",
				"SETDESC":    `Sign in to example.com as "alice"?`,
				"SETOK":      "Allow",
				"SETCANCEL":  "Deny",
				"SETTIMEOUT": "30",
				"CONFIRM":    "",
			}
			for k, v := range want {
				if got, ok := cmds[k]; !ok || got != v {
					t.Errorf("%s %q, want %q", k, got, v)
				}
			}
		})
	}
}

func TestPinentryPresenceSanitises(t *testing.T) {
	p, dir := newFakePinentry(t, "OK")
	rp, user := "evil.example\n\x1b[2Jbank.example", "100%\r\nroot\u202e"
	if err := p.ConfirmPresence(testCtx(t), OpMakeCredential, rp, user); err != nil {
		t.Fatal(err)
	}
	got := fakeLog(t, dir)["SETDESC"]
	want := strings.ReplaceAll(Message(OpMakeCredential, rp, user), "%", "%25")
	if got != want || strings.Contains(got, "%0A") || strings.Contains(got, "\x1b") {
		t.Errorf("SETDESC %q, want %q", got, want)
	}
}

func TestPinentryPresenceTimeout(t *testing.T) {
	tctx := testCtx(t)
	p, dir := newFakePinentry(t, "SLEEP")
	p.Timeout = 200 * time.Millisecond
	err := p.ConfirmPresence(tctx, OpMakeCredential, "example.com", "")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ConfirmPresence = %v, want context.DeadlineExceeded", err)
	}
	if got := fakeLog(t, dir)["SETTIMEOUT"]; got != "1" {
		t.Errorf("SETTIMEOUT %q, want 1 (rounded up)", got)
	}
	pid, child := readPID(t, filepath.Join(dir, "pid")), readPID(t, filepath.Join(dir, "child"))
	if alive(pid) {
		t.Errorf("pinentry %d still running", pid)
	}
	eventually(t, tctx, "pinentry's child to die", func() bool { return !alive(child) })
}

func TestPinentryPresenceCancel(t *testing.T) {
	tctx := testCtx(t)
	p, dir := newFakePinentry(t, "SLEEP")
	ctx, cancel := context.WithCancel(tctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- p.ConfirmPresence(ctx, OpGetAssertion, "example.com", "bob") }()
	eventually(t, tctx, "the prompt", func() bool {
		_, err := os.Stat(filepath.Join(dir, "child"))
		return err == nil
	})
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("ConfirmPresence = %v, want context.Canceled", err)
		}
	case <-tctx.Done():
		t.Fatal("ConfirmPresence did not return after cancellation")
	}
	if pid := readPID(t, filepath.Join(dir, "pid")); alive(pid) {
		t.Errorf("pinentry %d still running", pid)
	}
	child := readPID(t, filepath.Join(dir, "child"))
	eventually(t, tctx, "pinentry's child to die", func() bool { return !alive(child) })

	// Already cancelled: pinentry does not even start.
	p, dir = newFakePinentry(t, "OK")
	if err := p.ConfirmPresence(ctx, OpSelection, "", ""); !errors.Is(err, context.Canceled) {
		t.Fatalf("ConfirmPresence = %v, want context.Canceled", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "pid")); err == nil {
		t.Error("pinentry ran despite a cancelled context")
	}
}

func TestNewPinentryPresence(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "pinentry")
	if err := os.WriteFile(exe, []byte(fakePinentry), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pinentry-gnome9"), []byte(fakePinentry), 0o755); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)

	for _, tt := range []struct {
		arg, want string // want "": an error
	}{
		{"", exe},
		{"pinentry-gnome9", filepath.Join(dir, "pinentry-gnome9")},
		{exe, exe},
		{"absent", ""},
		{filepath.Join(dir, "absent"), ""},
		{plain, ""},
		{dir, ""},
		{"./pinentry", ""},
	} {
		p, err := NewPinentryPresence(tt.arg, nil)
		switch {
		case tt.want == "" && err == nil:
			t.Errorf("NewPinentryPresence(%q) = %q, want an error", tt.arg, p.Program.Path)
		case tt.want != "" && (err != nil || p.Program.Path != tt.want):
			t.Errorf("NewPinentryPresence(%q) = %q, %v; want %q", tt.arg, p.Program.Path, err, tt.want)
		}
	}
}
