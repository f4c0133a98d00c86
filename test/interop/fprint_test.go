package interop

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/authd/authd/internal/fprinttest"
)

// startWith starts d like daemon.start, with extra authd arguments.
func (d *daemon) startWith(t *testing.T, extra ...string) {
	t.Helper()
	d.runs++
	fmt.Fprintf(&d.stderr, "===== authd run %d: --presence %s %s =====\n", d.runs, d.presence, strings.Join(extra, " "))
	args := append([]string{"--state-dir", d.stateDir, "--ctaphid-socket", d.sock,
		"--presence", d.presence, "--tpm", "none", "--dbus", "none", "--log-level", "debug"}, extra...)
	cmd := exec.Command(d.bin, args...)
	cmd.Stdout = &d.stderr
	cmd.Stderr = &d.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start authd: %v", err)
	}
	d.cmd = cmd
	d.exited = make(chan struct{})
	go func() {
		d.err = cmd.Wait()
		close(d.exited)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if d.isExited() {
			t.Fatalf("authd exited before serving: %v\n%s", d.err, d.stderr.String())
		}
		c, err := net.DialTimeout("unix", d.sock, time.Second)
		if err == nil {
			c.Close()
			d.ready = time.Now()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("authd socket %s not accepting after 30s: %v", d.sock, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// feedFinger plays the finger for fido2_bio.py: "FP CMD" lines are sent to
// the virtual device at once (an enrollment holds the device, so they are
// queued for the next capture); "VSCAN ID" lines are matched, in order, with
// the verifications fprintd starts (VerifyFingerSelected), and ID is scanned
// once that verification runs ("-" scans nothing). It returns when lines is
// closed.
func feedFinger(t *testing.T, e *fprinttest.Env, lines <-chan string) {
	conn := e.Conn(t)
	if err := conn.AddMatchSignal(
		dbus.WithMatchInterface("net.reactivated.Fprint.Device"),
		dbus.WithMatchMember("VerifyFingerSelected"),
	); err != nil {
		t.Error(err)
		return
	}
	sigs := make(chan *dbus.Signal, 64)
	conn.Signal(sigs)
	send := func(cmd string) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if _, err := e.Send(ctx, cmd); err != nil {
			t.Errorf("virtual device: %v", err)
		}
	}
	scan := func(id string) {
		if id != "-" {
			send("SCAN " + id)
		}
	}
	var queue []string
	started := 0 // verifications that began before their VSCAN line was read
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				return
			}
			switch {
			case strings.HasPrefix(line, "FP "):
				send(strings.TrimPrefix(line, "FP "))
			case strings.HasPrefix(line, "VSCAN "):
				id := strings.TrimPrefix(line, "VSCAN ")
				if started > 0 {
					started--
					scan(id)
				} else {
					queue = append(queue, id)
				}
			}
		case s := <-sigs:
			if s.Name != "net.reactivated.Fprint.Device.VerifyFingerSelected" {
				continue
			}
			if len(queue) == 0 {
				started++
				continue
			}
			id := queue[0]
			queue = queue[1:]
			scan(id)
		}
	}
}

// runBio runs fido2_bio.py against d while feedFinger plays the finger.
func runBio(t *testing.T, e *fprinttest.Env, d *daemon, args ...string) (string, bool) {
	t.Helper()
	script, err := filepath.Abs("fido2_bio.py")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, python, append([]string{script, d.sock}, args...)...)
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	cmd.Stdout, cmd.Stderr = w, w
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	lines := make(chan string, 64)
	fed := make(chan struct{})
	go func() { feedFinger(t, e, lines); close(fed) }()
	var out strings.Builder
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		lines <- sc.Text()
	}
	close(lines)
	<-fed
	r.Close()
	err = cmd.Wait()
	t.Logf("$ fido2_bio.py %s  (%.1fs)\n%s", strings.Join(args, " "), time.Since(start).Seconds(), out.String())
	return out.String(), err == nil
}

// TestFprintBio runs python-fido2's FPBioEnrollment, built-in UV tokens,
// uv=true assertions, the UV retry counter, its block and the PIN fallback
// against authd using real fprintd with libfprint's virtual device.
func TestFprintBio(t *testing.T) {
	t.Parallel()
	requirePython(t)
	e := fprinttest.Start(t)
	d := newDaemon(t, "allow")
	d.startWith(t, "--fingerprint", "system", "--system-bus", e.Addr)
	if !strings.Contains(d.stderr.String(), "fingerprint reader via fprintd") {
		t.Errorf("authd did not log the fingerprint reader:\n%s", d.stderr.String())
	}
	out, ok := runBio(t, e, d, "--pin", "24681357")
	if !ok || !strings.Contains(out, "RESULT bio") {
		t.Errorf("fido2_bio.py failed:\n%s", strings.Join(failLine.FindAllString(out, -1), "\n"))
	}
	d.stop(t)
}

// TestFprintUVPolicy checks what getInfo offers for --uv pin and for
// --fingerprint auto without fprintd.
func TestFprintUVPolicy(t *testing.T) {
	t.Parallel()
	requirePython(t)
	const probe = `import sys
sys.path.insert(0, sys.argv[2])
from fido2_client import open_device
from fido2.ctap2 import Ctap2
o = Ctap2(open_device(sys.argv[1])).info.options
print("uv=%s bioEnroll=%s" % (o.get("uv"), o.get("bioEnroll")))
`
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	e := fprinttest.Start(t)
	noFprintd := fprinttest.StartWith(t, fprinttest.Options{NoFprintd: true})
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"system", []string{"--fingerprint", "system", "--system-bus", e.Addr}, "uv=False bioEnroll=False"},
		{"uv-pin", []string{"--fingerprint", "system", "--uv", "pin", "--system-bus", e.Addr}, "uv=None bioEnroll=None"},
		{"auto-without-fprintd", []string{"--fingerprint", "auto", "--system-bus", noFprintd.Addr}, "uv=None bioEnroll=None"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := newDaemon(t, "allow")
			d.startWith(t, c.args...)
			out, ok := run(t, python, "-c", probe, d.sock, dir)
			if !ok || !strings.Contains(out, c.want) {
				t.Errorf("getInfo options: %q, want %q", strings.TrimSpace(out), c.want)
			}
			d.stop(t)
		})
	}
}
