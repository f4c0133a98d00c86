package packaging

import (
	"strings"
	"testing"
)

func TestRender(t *testing.T) {
	u, err := Render(Unit, "/opt/authd/bin/authd")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(u, "\nExecStart=/opt/authd/bin/authd\n") || strings.Contains(u, "%h/.local/bin/authd") {
		t.Errorf("unit ExecStart not replaced:\n%s", u)
	}
	d, err := Render(DBusService, "/opt/authd/bin/authd")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(d, "\nExec=/opt/authd/bin/authd\n") {
		t.Errorf("dbus service Exec not replaced:\n%s", d)
	}
	for _, bad := range []string{"authd", "/with space/authd", "/a%h/authd"} {
		if _, err := Render(Unit, bad); err == nil {
			t.Errorf("Render accepted %q", bad)
		}
	}
}

// TestUnitContents keeps the unit's contract: D-Bus activation and hardening.
func TestUnitContents(t *testing.T) {
	for _, want := range []string{
		"Type=dbus", "BusName=org.authd.Authenticator1", "ExecStart=%h/.local/bin/authd",
		"NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=read-only",
		"ReadWritePaths=%h/.local/share/authd %t/authd", "PrivateTmp=yes", "RestrictAddressFamilies=AF_UNIX",
		"LockPersonality=yes", "MemoryDenyWriteExecute=yes", "SystemCallArchitectures=native",
		"DeviceAllow=/dev/tpmrm0 rw",
	} {
		if !strings.Contains(Unit, "\n"+want+"\n") {
			t.Errorf("authd.service lacks %q", want)
		}
	}
	for _, want := range []string{"[D-BUS Service]", "Name=org.authd.Authenticator1", "SystemdService=authd.service"} {
		if !strings.Contains(DBusService, want+"\n") {
			t.Errorf("D-Bus service file lacks %q", want)
		}
	}
}
