package interop

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/authd/authd/ipc/dbus/dbustest"
)

// TestDBusFido2Server: python-fido2's Fido2Server, an independent relying
// party, registers and signs in through a real authd process's D-Bus
// platform API on a private session bus (dbus-python as the client).
func TestDBusFido2Server(t *testing.T) {
	requirePython(t)
	if err := exec.Command("/usr/bin/python3", "-c", "import dbus").Run(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("python3-dbus missing (installed with python3-dbusmock); run scripts/test.sh")
		}
		t.Skip("python3-dbus missing")
	}
	bus := dbustest.NewBus(t)
	dir := t.TempDir()
	sockDir, err := os.MkdirTemp("", "authd-sock-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	cmd := exec.Command(buildAuthd(t), "--state-dir", filepath.Join(dir, "state"), "--ctaphid-socket", filepath.Join(sockDir, "ctaphid.sock"),
		"--presence", "allow", "--tpm", "none", "--fingerprint", "none", "--dbus", "session")
	cmd.Env = append(os.Environ(), "DBUS_SESSION_BUS_ADDRESS="+bus.Addr)
	var logs syncBuffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}()
	out, err := exec.Command("/usr/bin/python3", "dbus_rp.py", bus.Addr).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ALL OK") {
		t.Fatalf("dbus_rp.py: %v\n%s\nauthd:\n%s", err, out, logs.String())
	}
	t.Logf("%s", out)
}
