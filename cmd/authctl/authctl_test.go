package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd/ipc"
	dbusapi "github.com/authd/authd/ipc/dbus"
	"github.com/authd/authd/ipc/dbus/dbustest"
)

func id(s string) []byte {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func fixture() *dbustest.Backend {
	return &dbustest.Backend{
		Creds: []ipc.CredentialInfo{
			{ID: id("ExAmPlEaLiCe0000000000000000000A"), RPID: "example.com", RPName: "Example", UserName: "alice",
				UserDisplayName: "Alice Liddell", Created: time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC),
				LastUsed: time.Date(2026, 2, 3, 4, 5, 0, 0, time.UTC), Discoverable: true, Backend: "tpm"},
			{ID: id("GiThUbBoB000000000000000000000B0"), RPID: "github.com", RPName: "GitHub", UserName: "bob",
				Created: time.Date(2025, 12, 24, 18, 0, 0, 0, time.UTC), Discoverable: true, Backend: "software", Protected: true},
			{ID: id("GiThUbCaRoL00000000000000000000C"), RPID: "github.com", RPName: "GitHub", UserName: "carol",
				Created: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), Backend: "tpm"},
		},
		Caps: map[string]bool{"userVerifyingPlatformAuthenticator": true, "passkeyPlatformAuthenticator": true, "extension:prf": false},
		St: map[string]any{"tpm": "/dev/tpmrm0", "data_key": "tpm", "pin_in_tpm": true,
			"backends": map[string]int{"tpm": 2, "software": 1}, "fingerprint": "none"},
	}
}

// TestScripts runs testdata/*.txt: testscript-style scripts against authctl's
// run function, talking to a fake Backend served by ipc/dbus on a private
// bus. Commands:
//
//	authctl ARGS...     run authctl --bus ADDR ARGS (quotes: '...')
//	status N            its exit status must be N (default 0)
//	[!] stdout REGEX    its stdout must (not) match
//	[!] stderr REGEX    its stderr must (not) match
//	[!] calls REGEX     the backend's call log (one call a line) must (not) match
//	fail METHOD NAME    the backend's METHOD fails with ipc error NAME from now on
func TestScripts(t *testing.T) {
	loc = time.UTC
	files, _ := filepath.Glob("testdata/*.txt")
	if len(files) == 0 {
		t.Fatal("no scripts")
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			bus := dbustest.NewBus(t)
			f := fixture()
			srv, err := dbusapi.Start(bus.Connect(), f, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(srv.Close)
			runScript(t, file, bus.Addr, f)
		})
	}
}

func runScript(t *testing.T, file, addr string, f *dbustest.Backend) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr string
	code, wantCode, ran := 0, 0, false
	checkCode := func(line int) {
		if ran && code != wantCode {
			t.Errorf("%s:%d: exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", file, line, code, wantCode, stdout, stderr)
		}
		ran = false
	}
	for n, line := range strings.Split(string(data), "\n") {
		n++
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		neg := false
		if rest, ok := strings.CutPrefix(line, "! "); ok {
			neg, line = true, rest
		}
		args := split(line)
		match := func(what, text string) {
			re, err := regexp.Compile("(?m)" + args[1])
			if err != nil {
				t.Fatalf("%s:%d: %v", file, n, err)
			}
			if re.MatchString(text) == neg {
				t.Errorf("%s:%d: %s %s %q; it was:\n%s", file, n, what, map[bool]string{false: "does not match", true: "matches"}[neg], args[1], text)
			}
		}
		switch args[0] {
		case "authctl":
			checkCode(n)
			var out, errb bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			code = run(ctx, append([]string{"--bus", addr}, args[1:]...), &out, &errb)
			cancel()
			stdout, stderr, wantCode, ran = out.String(), errb.String(), 0, true
		case "status":
			wantCode, _ = strconv.Atoi(args[1])
			checkCode(n)
		case "stdout":
			match("stdout", stdout)
		case "stderr":
			match("stderr", stderr)
		case "calls":
			match("calls", strings.Join(f.Calls(), "\n"))
		case "fail":
			f.SetErr(args[1], ipc.Errorf(args[2], "%s failed in the test", args[1]))
		default:
			t.Fatalf("%s:%d: unknown command %q", file, n, args[0])
		}
	}
	checkCode(-1)
}

// split splits a script line into words; '...' quotes.
func split(line string) []string {
	var out []string
	var cur strings.Builder
	inQ, have := false, false
	for _, r := range line {
		switch {
		case r == '\'':
			inQ, have = !inQ, true
		case r == ' ' && !inQ:
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if have {
		out = append(out, cur.String())
	}
	return out
}

func TestInstallUser(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("HOME", dir)
	t.Setenv("XDG_CONFIG_HOME", "")
	t.Setenv("XDG_DATA_HOME", filepath.Join(dir, "data"))
	authd := filepath.Join(dir, "bin", "authd")
	os.MkdirAll(filepath.Dir(authd), 0o755)
	os.WriteFile(authd, []byte("#!/bin/sh\n"), 0o755)

	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"install"}, &out, &errb); code != exitUsage {
		t.Errorf("install without --user: %d", code)
	}
	out.Reset()
	errb.Reset()
	if code := run(context.Background(), []string{"install", "--user", "--authd", filepath.Join(dir, "bin", "nope")}, &out, &errb); code != exitFail ||
		!strings.Contains(errb.String(), "no authd executable") {
		t.Errorf("install with a missing authd: %d %s", code, errb.String())
	}
	out.Reset()
	errb.Reset()
	if code := run(context.Background(), []string{"install", "--user", "--authd", authd}, &out, &errb); code != exitOK {
		t.Fatalf("install: %d %s", code, errb.String())
	}
	unit, err := os.ReadFile(filepath.Join(dir, ".config", "systemd", "user", "authd.service"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "\nExecStart="+authd+"\n") || !strings.Contains(string(unit), "Type=dbus") {
		t.Errorf("unit:\n%s", unit)
	}
	svc, err := os.ReadFile(filepath.Join(dir, "data", "dbus-1", "services", "org.authd.Authenticator1.service"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(svc), "\nExec="+authd+"\n") || !strings.Contains(string(svc), "SystemdService=authd.service") {
		t.Errorf("dbus service:\n%s", svc)
	}
	if !strings.Contains(out.String(), "systemctl --user daemon-reload") {
		t.Errorf("install output:\n%s", out.String())
	}

	// doctor sees the installed files (no bus here: it fails on the bus check).
	out.Reset()
	errb.Reset()
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path="+filepath.Join(dir, "nobus"))
	code := run(context.Background(), []string{"doctor"}, &out, &errb)
	if code != exitFail || !regexp.MustCompile(`(?m)^FAIL +session bus`).MatchString(out.String()) ||
		!regexp.MustCompile(`(?m)^ok +systemd unit .*`+regexp.QuoteMeta(authd)).MatchString(out.String()) {
		t.Errorf("doctor: %d\n%s%s", code, out.String(), errb.String())
	}
}

// TestNoAuthd: a bus where nobody serves org.authd.Authenticator1.
func TestNoAuthd(t *testing.T) {
	bus := dbustest.NewBus(t)
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"--bus", bus.Addr, "list"}, &out, &errb)
	if code != exitFail || !strings.Contains(errb.String(), "org.freedesktop.DBus.Error.ServiceUnknown") ||
		!strings.Contains(errb.String(), "authctl install --user") {
		t.Errorf("list without authd: %d\n%s", code, errb.String())
	}
	out.Reset()
	code = run(context.Background(), []string{"--bus", bus.Addr, "doctor"}, &out, &errb)
	if code != exitFail || !regexp.MustCompile(`(?m)^FAIL +authd +not running and not D-Bus activatable`).MatchString(out.String()) {
		t.Errorf("doctor without authd: %d\n%s", code, out.String())
	}
}

// TestInterruptCancels: Ctrl-C during `pin set` sends Cancel(), which ends
// the backend's call.
func TestInterruptCancels(t *testing.T) {
	bus := dbustest.NewBus(t)
	f := fixture()
	f.Release = make(chan struct{})
	f.Started, f.Ended = make(chan string, 1), make(chan error, 1)
	srv, err := dbusapi.Start(bus.Connect(), f, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-f.Started; cancel() }()
	var out, errb bytes.Buffer
	code := run(ctx, []string{"--bus", bus.Addr, "pin", "set"}, &out, &errb)
	if code != exitFail || !strings.Contains(errb.String(), "org.authd.Error.AbortError") {
		t.Errorf("interrupted pin set: %d\n%s", code, errb.String())
	}
	select {
	case err := <-f.Ended:
		if err == nil {
			t.Error("backend call not cancelled")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("backend call still running")
	}
}
