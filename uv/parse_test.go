package uv

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParsePresence(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "approve")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	noexec := filepath.Join(dir, "noexec")
	if err := os.WriteFile(noexec, []byte("#!/bin/sh\nexit 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pipeR, pipeW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pipeR.Close()
	defer pipeW.Close()

	type kind int
	const (
		isErr kind = iota
		isAllow
		isDeny
		isTerminal
		isCommand
		isAuto
	)
	tests := []struct {
		spec  string
		stdin *os.File
		want  kind
		err   string // substring of the error
	}{
		{"allow", nil, isAllow, ""},
		{"deny", nil, isDeny, ""},
		{"terminal", pipeR, isTerminal, ""},
		{"terminal", nil, isErr, "no stdin"},
		{"auto", pipeR, isAuto, ""}, // a pipe is not a terminal
		{"auto", nil, isAuto, ""},
		{"command:" + exe, nil, isCommand, ""},
		{"command:", nil, isErr, "absolute"},
		{"command:approve", nil, isErr, "absolute"},
		{"command:./approve", nil, isErr, "absolute"},
		{"command:" + filepath.Join(dir, "absent"), nil, isErr, "no such file"},
		{"command:" + noexec, nil, isErr, "not executable"},
		{"command:" + dir, nil, isErr, "not a regular file"},
		{"", nil, isErr, "auto, notify, pinentry[:PATH], terminal, command:PATH, allow or deny"},
		{"yes", nil, isErr, "auto, notify, pinentry[:PATH], terminal, command:PATH, allow or deny"},
		{"Allow", nil, isErr, "unknown presence mode"},
	}
	for _, tt := range tests {
		log, _ := testLogger()
		p, err := ParsePresence(tt.spec, tt.stdin, log)
		if tt.want == isErr {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParsePresence(%q) error = %v, want one containing %q", tt.spec, err, tt.err)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "uv: ") {
				t.Errorf("ParsePresence(%q) error %q lacks the uv: prefix", tt.spec, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParsePresence(%q) = %v", tt.spec, err)
			continue
		}
		var got kind
		switch p := p.(type) {
		case AllowPresence:
			got = isAllow
		case DenyPresence:
			got = isDeny
		case *TerminalPresence:
			got = isTerminal
			if p.In != tt.stdin {
				t.Errorf("ParsePresence(%q) reads from %v, want stdin", tt.spec, p.In)
			}
		case *AutoPresence:
			got = isAuto
			if p.Terminal != nil {
				t.Errorf("ParsePresence(%q) on a non-terminal would ask on it", tt.spec)
			}
			p.Close()
		case CommandPresence:
			got = isCommand
			if p.Path != exe {
				t.Errorf("ParsePresence(%q).Path = %q", tt.spec, p.Path)
			}
		}
		if got != tt.want {
			t.Errorf("ParsePresence(%q) = %T, want kind %d", tt.spec, p, tt.want)
		}
	}
}

func TestParsePresenceAutoOnTerminal(t *testing.T) {
	_, slave := openPTY(t)
	p, err := ParsePresence("auto", slave, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, ok := p.(*AutoPresence)
	if !ok || a.Terminal == nil || a.Terminal.In != slave {
		t.Fatalf("ParsePresence(auto) on a terminal = %#v, want *AutoPresence with a terminal on it", p)
	}
	a.Close()
}

func TestParsePresenceAutoExplains(t *testing.T) {
	// No notification server, no display, no terminal: nobody to ask.
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path="+t.TempDir()+"/no-bus")
	t.Setenv("DISPLAY", "")
	t.Setenv("WAYLAND_DISPLAY", "")
	log, logs := testLogger()
	p, err := ParsePresence("auto", nil, log)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "--presence notify|pinentry|terminal|command:PATH|allow") ||
		!strings.Contains(logs.String(), "no notification server") || !strings.Contains(logs.String(), "no display") {
		t.Errorf("auto without a terminal does not explain itself: %s", logs)
	}
	// It waits for a notification server, then times out saying why.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := p.ConfirmPresence(ctx, OpGetAssertion, "example.com", ""); !errors.Is(err, context.DeadlineExceeded) ||
		!strings.Contains(err.Error(), "no notification server") {
		t.Errorf("auto without a terminal = %v, want a timeout saying there is no notification server", err)
	}
}

func TestAllowPresence(t *testing.T) {
	log, logs := testLogger()
	p := AllowPresence{Logger: log}
	for range 2 {
		if err := p.ConfirmPresence(context.Background(), OpMakeCredential, "example.com", "u"); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(logs.String(), "level=WARN msg=\"presence auto-approved (--presence allow): for tests only\" op=makeCredential rp=example.com"); n != 2 {
		t.Errorf("want a warning per use, got %d in:\n%s", n, logs)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.ConfirmPresence(ctx, OpSelection, "", ""); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled = %v", err)
	}
}

func TestDenyPresence(t *testing.T) {
	log, logs := testLogger()
	err := DenyPresence{Reason: "no terminal", Logger: log}.ConfirmPresence(context.Background(), OpGetAssertion, "example.com", "")
	if !errors.Is(err, ErrDeclined) || !strings.Contains(err.Error(), "no terminal") {
		t.Errorf("DenyPresence = %v", err)
	}
	if !strings.Contains(logs.String(), "--presence notify|pinentry|terminal|command:PATH|allow") {
		t.Errorf("log does not say how to configure presence: %s", logs)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := (DenyPresence{}).ConfirmPresence(ctx, OpSelection, "", ""); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled = %v", err)
	}
}

// The modes satisfy Presence, whose method set the CTAP2 engine consumes.
var (
	_ Presence = AllowPresence{}
	_ Presence = DenyPresence{}
	_ Presence = CommandPresence{}
	_ Presence = (*TerminalPresence)(nil)
)

func TestWithTimeout(t *testing.T) {
	p := WithTimeout(NotifyPresence{}, 5*time.Second)
	if p.(NotifyPresence).Timeout != 5*time.Second {
		t.Fatal("notify timeout not set")
	}
	p = WithTimeout(PinentryPresence{}, 7*time.Second)
	if p.(PinentryPresence).Timeout != 7*time.Second {
		t.Fatal("pinentry timeout not set")
	}
	if _, ok := WithTimeout(AllowPresence{}, time.Second).(AllowPresence); !ok {
		t.Fatal("other modes unchanged")
	}
}
