// Package browser runs authd's browser extension end to end in Debian's
// headless Chromium, driven by playwright-core (test/browser/e2e.js): demo
// relying party → extension → authd-nmhost → private session bus → authd,
// and the fallback to Chromium's own WebAuthn (a DevTools virtual
// authenticator) when authd is not on the bus or the page asks for a
// cross-platform authenticator.
//
// firefox_test.go does the same in Debian's firefox-esr, driven through
// Firefox's own Marionette protocol (marionette_test.go).
//
// They run when AUTHD_BROWSER_E2E=1 (needs chromium, firefox-esr, node and
// `npm ci` in this directory); otherwise they are skipped. Screenshots go to
// test/browser/test-artifacts/ (ignored by git).
package browser

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/authd/authd/ipc/dbus/dbustest"
)

func need(t *testing.T, what string, ok bool) {
	t.Helper()
	if !ok {
		if os.Getenv("CI") != "" {
			t.Fatal(what + " is missing (CI is set)")
		}
		t.Skip(what + " is missing")
	}
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func start(t *testing.T, name string, cmd *exec.Cmd) {
	t.Helper()
	logf, err := os.Create(filepath.Join(os.Getenv("AUTHD_E2E_LOGDIR"), name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	t.Cleanup(func() {
		// SIGTERM first: authd closes its store, Firefox ends its content
		// processes and the host before the temp dirs go.
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("--- %s log ---\n%s", name, b)
		}
	})
}

// gate runs the end-to-end tests only under AUTHD_BROWSER_E2E=1; under CI
// anything else is a failure unless switched off explicitly with 0.
func gate(t *testing.T) {
	t.Helper()
	switch e2e := os.Getenv("AUTHD_BROWSER_E2E"); {
	case e2e == "0":
		t.Skip("AUTHD_BROWSER_E2E=0: the browser end-to-end tests are switched off explicitly")
	case e2e != "1" && os.Getenv("CI") != "":
		t.Fatal("CI is set but AUTHD_BROWSER_E2E is not 1: run scripts/test.sh, which installs chromium and firefox-esr and runs npm ci in test/browser (AUTHD_BROWSER_E2E=0 opts out explicitly)")
	case e2e != "1":
		t.Skip("set AUTHD_BROWSER_E2E=1 to run the browser end-to-end tests (needs chromium, firefox-esr, node and `npm ci` in test/browser)")
	}
}

// stack is what every browser test talks to: authd on a private session
// bus with presence answered by a script, the demo RP, and the binaries.
type stack struct {
	root, tmp, bin string
	env            []string // the test's environment: the private bus, HOME and XDG_CONFIG_HOME in tmp
	busAddr        string
	rpURL          string
	// While denyFile exists the user says no. While otherFile exists the
	// user picks "use another device" (exit 3, offered only when
	// AUTHD_ALLOW_ALTERNATIVE=1) and the prompt's op is appended to
	// otherFile.asked. While holdFile exists the prompt waits (the user is
	// slow), after appending its op to holdFile.waiting.
	denyFile, otherFile, holdFile string
	authd                         *exec.Cmd
	artifacts                     string
}

func newStack(t *testing.T) *stack {
	t.Helper()
	dbustest.Require(t)
	s := &stack{tmp: t.TempDir()}
	s.root, _ = filepath.Abs("../..")
	logDir := filepath.Join(s.tmp, "logs")
	os.MkdirAll(logDir, 0o755)
	t.Setenv("AUTHD_E2E_LOGDIR", logDir)
	s.bin = filepath.Join(s.tmp, "bin")
	build := exec.Command("go", "build", "-o", s.bin+"/", "./cmd/authd", "./cmd/authd-nmhost", "./cmd/authd-demo-rp", "./cmd/authctl")
	build.Dir = s.root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	bus := dbustest.NewBus(t)
	s.busAddr = bus.Addr
	s.env = append(os.Environ(), "DBUS_SESSION_BUS_ADDRESS="+bus.Addr, "XDG_CONFIG_HOME="+filepath.Join(s.tmp, "config"), "HOME="+s.tmp)

	sockDir := filepath.Join(s.tmp, "run")
	if err := os.Mkdir(sockDir, 0o700); err != nil {
		t.Fatal(err)
	}
	s.denyFile = filepath.Join(s.tmp, "deny")
	s.otherFile = filepath.Join(s.tmp, "other")
	s.holdFile = filepath.Join(s.tmp, "hold")
	presence := filepath.Join(s.tmp, "presence.sh")
	os.WriteFile(presence, []byte("#!/bin/sh\n"+
		"if [ -e "+s.holdFile+" ]; then echo \"$AUTHD_OPERATION\" >> "+s.holdFile+".waiting; while [ -e "+s.holdFile+" ]; do sleep 0.05; done; fi\n"+
		"if [ -e "+s.denyFile+" ]; then exit 1; fi\n"+
		"if [ -e "+s.otherFile+" ] && [ \"$AUTHD_ALLOW_ALTERNATIVE\" = 1 ]; then echo \"$AUTHD_OPERATION\" >> "+s.otherFile+".asked; exit 3; fi\nexit 0\n"), 0o755)
	s.authd = exec.Command(filepath.Join(s.bin, "authd"), "--state-dir", filepath.Join(s.tmp, "state"),
		"--ctaphid-socket", filepath.Join(sockDir, "ctaphid.sock"), "--presence", "command:"+presence,
		"--dbus", "session", "--tpm", "none", "--fingerprint", "none", "--log-level", "debug")
	s.authd.Env = s.env
	start(t, "authd", s.authd)
	waitName(t, bus.Addr)

	port := freePort(t)
	rp := exec.Command(filepath.Join(s.bin, "authd-demo-rp"), "--listen", fmt.Sprintf("127.0.0.1:%d", port))
	start(t, "demo-rp", rp)
	waitTCP(t, port)
	s.rpURL = fmt.Sprintf("http://localhost:%d", port)

	s.artifacts, _ = filepath.Abs("test-artifacts")
	os.MkdirAll(s.artifacts, 0o755)
	return s
}

// authctl runs the freshly built authctl in the stack's environment.
func (s *stack) authctl(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(s.bin, "authctl"), args...)
	cmd.Env = s.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("authctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestChromiumExtension(t *testing.T) {
	gate(t)
	chromium, err := exec.LookPath("chromium")
	need(t, "chromium", err == nil)
	node, err := exec.LookPath("node")
	need(t, "node", err == nil)
	_, err = os.Stat("node_modules/playwright-core")
	need(t, "test/browser/node_modules (run `npm ci` in test/browser)", err == nil)
	s := newStack(t)

	udd := filepath.Join(s.tmp, "udd")
	s.authctl(t, "browser", "install", "--dir", filepath.Join(udd, "NativeMessagingHosts"), "--host", filepath.Join(s.bin, "authd-nmhost"))

	// A second browser profile whose host talks to a bus where nobody owns
	// org.authd.Authenticator1 (authd not running): the fallback phase.
	emptyBus := dbustest.NewBus(t)
	udd2 := filepath.Join(s.tmp, "udd-no-authd")
	s.authctl(t, "browser", "install", "--dir", filepath.Join(udd2, "NativeMessagingHosts"), "--host", filepath.Join(s.bin, "authd-nmhost"))

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	e2e := exec.CommandContext(ctx, node, "e2e.js")
	e2e.Env = append(s.env,
		"CHROMIUM="+chromium,
		"EXT_DIR="+filepath.Join(s.root, "browser", "extension"),
		"USER_DATA_DIR="+udd,
		"USER_DATA_DIR_NO_AUTHD="+udd2,
		"EMPTY_BUS_ADDRESS="+emptyBus.Addr,
		"RP_URL="+s.rpURL,
		"DENY_FILE="+s.denyFile,
		"OTHER_FILE="+s.otherFile,
		"HOLD_FILE="+s.holdFile,
		"ARTIFACTS="+s.artifacts,
		"TMPDIR="+s.tmp,
	)
	out, err := e2e.CombinedOutput()
	t.Logf("e2e.js output:\n%s", out)
	if err != nil {
		t.Fatalf("e2e.js: %v", err)
	}
}

func waitName(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		out, _ := exec.Command("dbus-send", "--bus="+addr, "--print-reply", "--dest=org.freedesktop.DBus",
			"/org/freedesktop/DBus", "org.freedesktop.DBus.NameHasOwner", "string:org.authd.Authenticator1").Output()
		if strings.Contains(string(out), "true") {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("authd did not take org.authd.Authenticator1 on the bus")
}

func waitTCP(t *testing.T, port int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("the demo RP did not listen")
}
