// Package vm_test proves authd's /dev/uhid door against a real kernel HID
// stack: it boots Debian's stock kernel under qemu (TCG) with an initramfs
// holding a static authd and libfido2's command-line tools, which register
// and sign in through the kernel's hidraw path and verify the results.
//
// These machines have no /dev/uhid, hence the VM. The recipe and its
// pitfalls (bus type, report-ID byte, hid-generic, -cpu max for entropy,
// the uncompressed vmlinux, ACPI for poweroff) are in
// ../shared/reference/vm-uhid.md.
package vm_test

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var (
	//go:embed testdata/init.sh
	initScript []byte
	//go:embed testdata/guest-test.sh
	guestScript []byte
	//go:embed testdata/presence.sh
	presenceScript []byte
)

// wantPass are the checks the guest must report as passed; any FAIL line,
// or one of these missing, fails the test.
var wantPass = []string{
	"no-device-before-authd", "device-created", "token-list", "token-info", "token-info-content",
	"cred-make", "cred-verify", "cred-make-eddsa", "cred-verify-eddsa",
	"assert-get", "assert-verify", "assert-verify-wrong-key",
	"assert-get-discoverable", "assert-verify-discoverable", "assert-no-credential",
	"ssh-keygen-ecdsa-sk", "ssh-sign-ecdsa-sk", "ssh-verify-ecdsa-sk", "ssh-verify-tampered-ecdsa-sk",
	"ssh-keygen-ed25519-sk", "ssh-sign-ed25519-sk", "ssh-verify-ed25519-sk", "ssh-verify-tampered-ed25519-sk",
	"requester-cred", "requester-assert",
	"authd-exit", "device-destroyed", "device-recreated", "assert-after-restart", "assert-verify-after-restart",
}

func TestUHIDInVM(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM (about 10 s under TCG)")
	}
	qemu := requireTool(t, "qemu-system-x86_64", "qemu-system-x86")
	requireTool(t, "busybox", "busybox-static")
	tools := map[string]string{}
	for _, name := range []string{"fido2-token", "fido2-cred", "fido2-assert"} {
		tools[name] = requireTool(t, name, "fido2-tools")
	}
	tools["ssh-keygen"] = requireTool(t, "ssh-keygen", "openssh-client")
	tools["ssh-sk-helper"] = sshSKHelper
	if _, err := os.Stat(sshSKHelper); err != nil {
		requireTool(t, sshSKHelper, "openssh-client")
	}
	bb, err := staticBusybox()
	if err != nil {
		t.Fatal(err)
	}
	kernel := prepareKernel(t)

	work := t.TempDir()
	authd := filepath.Join(work, "authd")
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", authd, "github.com/authd/authd/cmd/authd")
	build.Env = append(os.Environ(), "CGO_ENABLED=0") // static: the guest has no Go runtime deps
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build static authd: %v\n%s", err, out)
	}

	r := newInitramfs()
	r.file("init", 0o755, initScript)
	r.file("guest-test.sh", 0o755, guestScript)
	r.file("presence.sh", 0o755, presenceScript)
	r.copyFile(t, "bin/busybox", bb, 0o755)
	r.copyFile(t, "usr/bin/authd", authd, 0o755)
	for _, m := range hidModules {
		r.copyFile(t, "lib/modules/"+m+".ko", kernel.modules[m], 0o644)
	}
	for _, p := range tools {
		r.program(t, p)
	}
	// ssh-keygen looks its user up.
	r.file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\n"))
	r.file("etc/group", 0o644, []byte("root:x:0:\n"))
	// The kernel opens /dev/console for /init before devtmpfs is mounted.
	r.chardev("dev/console", 0o600, 5, 1)
	for _, d := range []string{"proc", "sys", "run", "tmp", "root"} {
		r.dir(d)
	}
	initrd := filepath.Join(work, "initramfs.cpio.gz")
	f, err := os.Create(initrd)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.write(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	// TCG: the KVM on these hosts (PVM) cannot run a stock kernel. The
	// timeout only guards against a hung guest; the run takes ~5-15 s.
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu,
		"-accel", "tcg", "-cpu", "max", "-m", "512", "-smp", "1",
		"-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio",
		"-kernel", kernel.vmlinux, "-initrd", initrd,
		"-append", "console=ttyS0 quiet panic=-1", "-no-reboot")
	var serial bytes.Buffer
	cmd.Stdout, cmd.Stderr = &serial, &serial
	start := time.Now()
	err = cmd.Run()
	elapsed := time.Since(start)
	log := serial.String()
	if art := os.Getenv("AUTHD_VM_LOG"); art != "" {
		_ = os.WriteFile(art, serial.Bytes(), 0o644)
	}
	if err != nil {
		t.Fatalf("qemu: %v after %v\nserial log:\n%s", err, elapsed.Round(time.Millisecond), log)
	}
	t.Logf("VM run (kernel %s) took %v", kernel.version, elapsed.Round(time.Millisecond))

	passed, failed := parseResults(log)
	for _, name := range wantPass {
		if !passed[name] {
			t.Errorf("guest check %q did not pass", name)
		}
	}
	for _, line := range failed {
		t.Errorf("guest: %s", line)
	}
	if !strings.Contains(log, "GUEST: finished") {
		t.Errorf("the guest script did not finish")
	}
	if t.Failed() || testing.Verbose() {
		t.Logf("serial log:\n%s", log)
	}
}

// sshSKHelper is where Debian's ssh-keygen finds its security-key
// middleware (linked to libfido2).
const sshSKHelper = "/usr/lib/openssh/ssh-sk-helper"

var resultLine = regexp.MustCompile(`^(PASS|FAIL) ([A-Za-z0-9_-]+)`)

// parseResults reads the guest's PASS/FAIL lines from the serial log.
func parseResults(log string) (passed map[string]bool, failed []string) {
	passed = map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(log))
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		m := resultLine.FindStringSubmatch(line)
		switch {
		case m == nil:
		case m[1] == "PASS":
			passed[m[2]] = true
		default:
			failed = append(failed, line)
		}
	}
	return passed, failed
}

// staticBusybox finds busybox-static's binary: the guest has no libc of its
// own beyond what the fido2 tools bring.
func staticBusybox() (string, error) {
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		out, err := exec.Command("file", "-L", p).Output()
		if err == nil && bytes.Contains(out, []byte("statically linked")) {
			return p, nil
		}
		if err != nil { // no file(1): trust busybox-static's path
			if _, serr := os.Stat(p); serr == nil {
				return p, nil
			}
		}
	}
	return "", errNoStaticBusybox
}

var errNoStaticBusybox = &exec.Error{Name: "busybox (static)", Err: exec.ErrNotFound}

func TestParseResults(t *testing.T) {
	passed, failed := parseResults("INIT: x\nPASS a\r\nFAIL b: exit 1\nPASSED c\nPASS d-e\n")
	if !passed["a"] || !passed["d-e"] || passed["c"] || passed["b"] {
		t.Errorf("passed = %v", passed)
	}
	if len(failed) != 1 || failed[0] != "FAIL b: exit 1" {
		t.Errorf("failed = %q", failed)
	}
}
