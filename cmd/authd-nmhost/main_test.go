package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd/internal/nmhost"
	dbusapi "github.com/authd/authd/ipc/dbus"
	"github.com/authd/authd/ipc/dbus/dbustest"
)

// build compiles the host once per test binary run.
func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "authd-nmhost")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// start runs the host as Chromium does: argv[1] the extension origin, cwd
// the binary's directory, stdin/stdout pipes, environment inherited (with
// overrides).
func start(t *testing.T, bin string, env []string, args ...string) (*exec.Cmd, io.WriteCloser, io.Reader, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = filepath.Dir(bin)
	cmd.Env = append(os.Environ(), env...)
	stderr := &bytes.Buffer{}
	cmd.Stderr = stderr
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, in, out, stderr
}

func roundTrip(t *testing.T, in io.Writer, out io.Reader, req string) nmhost.Reply {
	t.Helper()
	if err := nmhost.WriteFrame(in, []byte(req)); err != nil {
		t.Fatal(err)
	}
	type res struct {
		b   []byte
		err error
	}
	c := make(chan res, 1)
	go func() { b, err := nmhost.ReadFrame(out, nmhost.ReplyLimit); c <- res{b, err} }()
	select {
	case r := <-c:
		if r.err != nil {
			t.Fatalf("reading the reply: %v", r.err)
		}
		var rep nmhost.Reply
		if err := json.Unmarshal(r.b, &rep); err != nil {
			t.Fatalf("reply %q: %v", r.b, err)
		}
		return rep
	case <-time.After(15 * time.Second):
		t.Fatal("no reply")
	}
	return nmhost.Reply{}
}

func waitExit(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("host did not exit")
	}
	return cmd.ProcessState.ExitCode()
}

func TestProcess(t *testing.T) {
	bin := build(t)
	bus := dbustest.NewBus(t)
	f := &dbustest.Backend{St: map[string]any{"tpm": "none"}, Caps: map[string]bool{"userVerifyingPlatformAuthenticator": true}}
	srv, err := dbusapi.Start(bus.Connect(), f, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	home := t.TempDir()
	base := []string{"HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, ".config")}
	origin := nmhost.ChromeOrigin(nmhost.DefaultExtensionID)

	t.Run("chromium", func(t *testing.T) {
		cmd, in, out, stderr := start(t, bin, append(base, "DBUS_SESSION_BUS_ADDRESS="+bus.Addr), origin)
		if r := roundTrip(t, in, out, `{"id":1,"type":"status"}`); !r.OK {
			t.Fatalf("status: %+v", r)
		}
		if r := roundTrip(t, in, out, `{"id":2,"type":"create","origin":"https://example.com","options":{"challenge":"SECRET"}}`); !r.OK {
			t.Fatalf("create: %+v %s", r, stderr)
		}
		if r := roundTrip(t, in, out, `not json`); r.OK || r.Error.Name != "TypeError" {
			t.Fatalf("malformed: %+v", r)
		}
		in.Close() // the port closes
		if code := waitExit(t, cmd); code != 0 {
			t.Fatalf("exit %d, stderr:\n%s", code, stderr)
		}
		if strings.Contains(stderr.String(), "SECRET") {
			t.Errorf("options logged:\n%s", stderr)
		}
		if !strings.Contains(stderr.String(), "closed the port") {
			t.Errorf("stderr:\n%s", stderr)
		}
	})

	t.Run("disabled bus env", func(t *testing.T) {
		rt, err := os.MkdirTemp("", "nmrt")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(rt) })
		path := strings.TrimPrefix(strings.Split(bus.Addr, ",")[0], "unix:path=")
		if err := os.Symlink(path, filepath.Join(rt, "bus")); err != nil {
			t.Fatal(err)
		}
		cmd, in, out, stderr := start(t, bin, append(base, "DBUS_SESSION_BUS_ADDRESS=disabled:", "XDG_RUNTIME_DIR="+rt), origin)
		if r := roundTrip(t, in, out, `{"id":"d","type":"capabilities"}`); !r.OK {
			t.Fatalf("capabilities: %+v\n%s", r, stderr)
		}
		in.Close()
		waitExit(t, cmd)
	})

	t.Run("no authd", func(t *testing.T) {
		rt := t.TempDir()
		cmd, in, out, _ := start(t, bin, append(base, "DBUS_SESSION_BUS_ADDRESS=disabled:", "XDG_RUNTIME_DIR="+rt), origin)
		r := roundTrip(t, in, out, `{"id":1,"type":"get","origin":"https://example.com","options":{}}`)
		if r.OK || r.Error.Name != nmhost.NotReachable {
			t.Fatalf("reply: %+v", r)
		}
		in.Close()
		waitExit(t, cmd)
	})

	t.Run("truncated", func(t *testing.T) {
		cmd, in, _, stderr := start(t, bin, append(base, "DBUS_SESSION_BUS_ADDRESS="+bus.Addr), origin)
		in.Write([]byte{10, 0, 0, 0, '{'})
		in.Close()
		if code := waitExit(t, cmd); code != 1 || !strings.Contains(stderr.String(), "truncated") {
			t.Fatalf("exit %d, stderr:\n%s", code, stderr)
		}
	})

	t.Run("refused caller", func(t *testing.T) {
		cmd, in, _, stderr := start(t, bin, base, "chrome-extension://cccccccccccccccccccccccccccccccc/")
		defer in.Close()
		if code := waitExit(t, cmd); code != 2 || !strings.Contains(stderr.String(), "not allowed") {
			t.Fatalf("exit %d, stderr:\n%s", code, stderr)
		}
	})

	t.Run("config allows", func(t *testing.T) {
		cfg := filepath.Join(home, ".config", "authd", "nmhost.json")
		os.MkdirAll(filepath.Dir(cfg), 0o755)
		os.WriteFile(cfg, []byte(`{"allowed_origins":["chrome-extension://cccccccccccccccccccccccccccccccc/"]}`), 0o644)
		defer os.Remove(cfg)
		cmd, in, out, _ := start(t, bin, append(base, "DBUS_SESSION_BUS_ADDRESS="+bus.Addr), "chrome-extension://cccccccccccccccccccccccccccccccc/")
		if r := roundTrip(t, in, out, `{"id":1,"type":"status"}`); !r.OK {
			t.Fatalf("status: %+v", r)
		}
		in.Close()
		waitExit(t, cmd)
	})
}
