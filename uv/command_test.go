package uv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// writeHelper writes an executable shell script into a fresh temp dir and
// returns its path and the directory.
func writeHelper(t *testing.T, body string) (path, dir string) {
	t.Helper()
	dir = t.TempDir()
	path = filepath.Join(dir, "helper")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path, dir
}

func TestCommandApproveDecline(t *testing.T) {
	for _, tt := range []struct {
		name, body string
		approve    bool
	}{
		{"exit0", "exit 0", true},
		{"exit1", "exit 1", false},
		{"exit2", "exit 2", false},
		{"killed", "kill -9 $$", false},
		// A background child holding stdout does not turn yes into no.
		{"exit0 leaving output open", "sleep 2 & exit 0", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path, _ := writeHelper(t, tt.body)
			log, _ := testLogger()
			err := CommandPresence{Path: path, Logger: log, Grace: 50 * time.Millisecond}.ConfirmPresence(testCtx(t), OpGetAssertion, "example.com", "user")
			if tt.approve && err != nil {
				t.Fatalf("ConfirmPresence = %v, want approval", err)
			}
			if !tt.approve && !errors.Is(err, ErrDeclined) {
				t.Fatalf("ConfirmPresence = %v, want ErrDeclined", err)
			}
		})
	}
}

func TestCommandMissingHelperDeclines(t *testing.T) {
	err := CommandPresence{Path: filepath.Join(t.TempDir(), "absent")}.ConfirmPresence(testCtx(t), OpSelection, "", "")
	if !errors.Is(err, ErrDeclined) {
		t.Fatalf("ConfirmPresence = %v, want ErrDeclined", err)
	}
}

func TestCommandEnvironment(t *testing.T) {
	t.Setenv("UV_TEST_INHERITED", "kept")
	t.Setenv("AUTHD_RP_ID", "stale.example") // must be overridden
	path, dir := writeHelper(t, `out="$(dirname "$0")/env"
for v in UV_TEST_INHERITED AUTHD_OPERATION AUTHD_RP_ID AUTHD_USER_NAME AUTHD_MESSAGE AUTHD_REQUESTER; do
	eval "printf '%s=%s\n' $v \"\$$v\"" >> "$out"
done
env | grep -c '^AUTHD_RP_ID=' >> "$out"`)
	rp, user := "example.com\x1b[2J", "al\x1bice"
	log, _ := testLogger()
	// The requester is looked up when the prompt is shown, and sanitised.
	calls := 0
	ctx := WithRequesterFunc(testCtx(t), func() string { calls++; return "fido2-cred\x1b]0;x" })
	err := CommandPresence{Path: path, Logger: log}.ConfirmPresence(ctx, OpMakeCredential, rp, user)
	if err != nil {
		t.Fatal(err)
	}
	if calls != 1 {
		t.Errorf("requester looked up %d times, want 1", calls)
	}
	got, err := os.ReadFile(filepath.Join(dir, "env"))
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		"UV_TEST_INHERITED=kept",
		"AUTHD_OPERATION=makeCredential",
		"AUTHD_RP_ID=example.com[2J",
		"AUTHD_USER_NAME=alice",
		"AUTHD_MESSAGE=" + Message(OpMakeCredential, rp, user),
		"AUTHD_REQUESTER=fido2-cred]0;x",
		"1", // a single AUTHD_RP_ID
	}, "\n") + "\n"
	if string(got) != want {
		t.Errorf("helper saw\n%s\nwant\n%s", got, want)
	}
	if !strings.Contains(want, `Create a passkey for "alice" on example.com[2J?`) {
		t.Errorf("unexpected message in %q", want)
	}
}

func TestCommandOutputLogged(t *testing.T) {
	path, _ := writeHelper(t, `echo "hello from stdout"
echo "hello from stderr" >&2
# Far more than the log keeps: must be drained, not block the helper.
i=0; while [ $i -lt 2000 ]; do echo "line $i of noise"; i=$((i+1)); done
exit 0`)
	log, logs := testLogger()
	if err := (CommandPresence{Path: path, Logger: log}).ConfirmPresence(testCtx(t), OpSelection, "", ""); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	for _, want := range []string{"hello from stdout", "hello from stderr", "stream=stderr", "output truncated"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	if strings.Contains(out, "line 1999 of noise") {
		t.Error("log was not bounded")
	}
	if len(out) > 4*maxHelperLog+64<<10 {
		t.Errorf("log is %d bytes", len(out))
	}
}

// alive reports whether pid exists and is not a zombie (orphans may be left
// unreaped by a container's init).
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func readPID(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func TestCommandCancelKillsProcessGroup(t *testing.T) {
	for _, tt := range []struct {
		name string
		trap string // shell commands run first
	}{
		{"honours SIGTERM", ""},
		{"ignores SIGTERM", "trap '' TERM"}, // also ignored by the child: needs SIGKILL
	} {
		t.Run(tt.name, func(t *testing.T) {
			tctx := testCtx(t)
			path, dir := writeHelper(t, tt.trap+`
d="$(dirname "$0")"
sleep 100000 &
echo $! > "$d/child.tmp" && mv "$d/child.tmp" "$d/child"
echo $$ > "$d/pid.tmp" && mv "$d/pid.tmp" "$d/pid"
while :; do wait; done`)
			ctx, cancel := context.WithCancel(tctx)
			defer cancel()
			errc := make(chan error, 1)
			go func() {
				errc <- CommandPresence{Path: path, Grace: 50 * time.Millisecond}.ConfirmPresence(ctx, OpMakeCredential, "example.com", "u")
			}()
			eventually(t, tctx, "helper to start", func() bool {
				_, err := os.Stat(filepath.Join(dir, "pid"))
				return err == nil
			})
			pid, child := readPID(t, filepath.Join(dir, "pid")), readPID(t, filepath.Join(dir, "child"))
			if !alive(pid) || !alive(child) {
				t.Fatal("helper exited before cancellation")
			}
			cancel()
			select {
			case err := <-errc:
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("ConfirmPresence = %v, want context.Canceled", err)
				}
			case <-tctx.Done():
				t.Fatal("ConfirmPresence did not return after cancellation")
			}
			if alive(pid) {
				t.Errorf("helper %d still running", pid)
			}
			// The child may need a moment to be torn down after SIGKILL.
			eventually(t, tctx, "helper's child to die", func() bool { return !alive(child) })
		})
	}
}

func TestCommandDeadline(t *testing.T) {
	path, dir := writeHelper(t, `echo $$ > "$(dirname "$0")/pid.tmp" && mv "$(dirname "$0")/pid.tmp" "$(dirname "$0")/pid"
exec sleep 100000`)
	tctx := testCtx(t)
	ctx, cancel := context.WithTimeout(tctx, 200*time.Millisecond)
	defer cancel()
	err := CommandPresence{Path: path}.ConfirmPresence(ctx, OpGetAssertion, "example.com", "")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ConfirmPresence = %v, want context.DeadlineExceeded", err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "pid")); err == nil {
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		if pid > 0 && syscall.Kill(pid, 0) == nil && alive(pid) {
			t.Errorf("helper %d still running", pid)
		}
	}
}

func TestCommandCancelledBeforeStart(t *testing.T) {
	path, dir := writeHelper(t, `touch "$(dirname "$0")/ran"`)
	ctx, cancel := context.WithCancel(testCtx(t))
	cancel()
	if err := (CommandPresence{Path: path}).ConfirmPresence(ctx, OpSelection, "", ""); !errors.Is(err, context.Canceled) {
		t.Fatalf("ConfirmPresence = %v, want context.Canceled", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "ran")); err == nil {
		t.Error("helper ran despite a cancelled context")
	}
}
