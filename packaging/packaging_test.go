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
		"DeviceAllow=/dev/tpmrm0 rw", "DeviceAllow=/dev/uhid rw",
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

// TestUdevRule keeps the rule's contract: the seat user gets /dev/uhid, the
// static node exists before the module loads, and the file sorts before
// systemd's 73-seat-late.rules, which applies uaccess.
func TestUdevRule(t *testing.T) {
	var rules []string
	for _, l := range strings.Split(UdevRule, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			rules = append(rules, l)
		}
	}
	want := `KERNEL=="uhid", SUBSYSTEM=="misc", TAG+="uaccess", OPTIONS+="static_node=uhid"`
	if len(rules) != 1 || rules[0] != want {
		t.Errorf("udev rules = %q, want [%q]", rules, want)
	}
	if base := UdevRulePath[strings.LastIndex(UdevRulePath, "/")+1:]; base >= "73-seat-late.rules" {
		t.Errorf("%s sorts after 73-seat-late.rules: uaccess would not be applied", base)
	}
	if strings.TrimSpace(stripComments(ModulesLoad)) != "uhid" {
		t.Errorf("modules-load file = %q", ModulesLoad)
	}
}

func stripComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(l, "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}
