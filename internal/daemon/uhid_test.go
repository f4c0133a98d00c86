package daemon

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/authd/authd/internal/uhid"
)

func TestCheckUHIDSpec(t *testing.T) {
	for _, ok := range []string{"auto", "on", "off"} {
		if err := CheckUHIDSpec(ok); err != nil {
			t.Errorf("CheckUHIDSpec(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "yes", "ON", "/dev/uhid"} {
		if err := CheckUHIDSpec(bad); err == nil {
			t.Errorf("CheckUHIDSpec(%q) accepted", bad)
		}
	}
}

// TestOpenUHIDModes: auto degrades to a note that Status and the D-Bus
// status report, on refuses, off is silent. (The device itself is proven
// against a real kernel in test/vm.)
func TestOpenUHIDModes(t *testing.T) {
	d, err := New(Config{StateDir: filepath.Join(t.TempDir(), "state"), Presence: approveAll{}, BootID: "b"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	missing := filepath.Join(t.TempDir(), "uhid")

	door, err := d.OpenUHID(UHIDAuto, missing)
	if err != nil || door != nil {
		t.Fatalf("auto with no device: door %v, err %v", door, err)
	}
	st := d.Status()
	if st.UHID != "" || !strings.Contains(st.UHIDNote, "does not exist") || !strings.Contains(st.UHIDNote, "modprobe uhid") {
		t.Errorf("Status after auto: UHID %q, note %q", st.UHID, st.UHIDNote)
	}
	m, err := d.Backend().Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m["uhid"]; ok || m["uhid_note"] != st.UHIDNote {
		t.Errorf("D-Bus status: uhid %v, uhid_note %v", m["uhid"], m["uhid_note"])
	}

	if _, err := d.OpenUHID(UHIDOn, missing); err == nil || !strings.Contains(err.Error(), "--uhid on") {
		t.Errorf("on with no device: err %v", err)
	}
	door, err = d.OpenUHID(UHIDOff, missing)
	if err != nil || door != nil {
		t.Errorf("off: door %v, err %v", door, err)
	}
	if st := d.Status(); !strings.Contains(st.UHIDNote, "--uhid off") {
		t.Errorf("note after off: %q", st.UHIDNote)
	}
	if _, err := d.OpenUHID("sometimes", missing); err == nil {
		t.Error("OpenUHID accepted an unknown mode")
	}
}

func TestDescribeHolders(t *testing.T) {
	for _, tc := range []struct {
		procs []uhid.Process
		want  string
	}{
		{nil, ""},
		{[]uhid.Process{{PID: 1, Comm: "fido2-cred", Exe: "/usr/bin/fido2-cred"}}, "fido2-cred"},
		{[]uhid.Process{{PID: 1, Comm: "cat"}}, "cat"}, // exe unreadable
		{[]uhid.Process{
			{PID: 3, Comm: "firefox-esr", Exe: "/usr/lib/firefox-esr/firefox-esr"},
			{PID: 4, Comm: "Socket Process", Exe: "/usr/lib/firefox-esr/firefox-esr"},
			{PID: 5, Comm: "ssh", Exe: "/usr/bin/ssh"},
		}, "firefox-esr, ssh"},
		{[]uhid.Process{{Exe: "/a"}, {Exe: "/b"}, {Exe: "/c"}, {Exe: "/d"}, {Exe: "/e"}}, "a, b, c and 2 more"},
	} {
		if got := describeHolders(tc.procs); got != tc.want {
			t.Errorf("describeHolders(%v) = %q, want %q", tc.procs, got, tc.want)
		}
	}
}
