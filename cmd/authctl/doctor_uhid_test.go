package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestDoctorUHID walks the door's failure steps: each one names the fix.
func TestDoctorUHID(t *testing.T) {
	dir := t.TempDir()
	dev := filepath.Join(dir, "uhid")
	rule := filepath.Join(dir, "70-authd-uhid.rules")
	denied := map[string]bool{}
	env := uhidEnv{dev: dev, rule: rule, modulesLoad: filepath.Join(dir, "m.conf"),
		access: func(p string, _ uint32) error {
			if denied[p] {
				return syscall.EACCES
			}
			if _, err := os.Stat(p); err != nil {
				return err
			}
			return nil
		}}
	run := func(status map[string]string) (level, text string) {
		t.Helper()
		var lines []string
		c := &cli{}
		c.doctorUHID(func(l, what, f string, a ...any) {
			lines = append(lines, l+" "+what+": "+fmt.Sprintf(f, a...))
		}, status, env)
		if len(lines) == 0 {
			t.Fatal("no report")
		}
		first, _, _ := strings.Cut(lines[0], " ")
		return first, strings.Join(lines, "\n")
	}
	expect := func(name string, status map[string]string, wantLevel string, wantText ...string) {
		t.Helper()
		level, text := run(status)
		if level != wantLevel {
			t.Errorf("%s: level %q, want %q\n%s", name, level, wantLevel, text)
		}
		for _, w := range wantText {
			if !strings.Contains(text, w) {
				t.Errorf("%s: report lacks %q:\n%s", name, w, text)
			}
		}
	}

	expect("no module", nil, "warn", "sudo modprobe uhid", "sudo authctl install --uhid")
	if err := os.WriteFile(dev, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	denied[dev] = true
	expect("no rule", map[string]string{"uhid_note": "no permission"}, "warn", "sudo authctl install --uhid", "restart authd")
	if err := os.WriteFile(rule, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	expect("rule not applied", map[string]string{"uhid_note": "no permission"}, "warn", "log out and in", "udevadm trigger")
	denied[dev] = false
	expect("usable, authd down", nil, "info", "creates its virtual FIDO device when it starts")
	expect("usable, authd without device", map[string]string{"uhid_note": "no permission"}, "warn", "restart authd", "no permission")
	expect("off", map[string]string{"uhid_note": "off (--uhid off)"}, "info", "--uhid off")
	expect("no hidraw yet", map[string]string{"uhid_note": "created; waiting for the kernel's hidraw node"}, "warn", "hid-generic")

	node := filepath.Join(dir, "hidraw3")
	if err := os.WriteFile(node, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	expect("device ok", map[string]string{"uhid": node}, "ok", node, "ok hidraw access")
	denied[node] = true
	_, text := run(map[string]string{"uhid": node})
	if !strings.Contains(text, "FAIL hidraw access") || !strings.Contains(text, "70-uaccess.rules") {
		t.Errorf("no access to the node: %s", text)
	}
}

func TestInstallUHID(t *testing.T) {
	dir := t.TempDir()
	env := defaultUHIDEnv
	env.rule = filepath.Join(dir, "rules.d", "70-authd-uhid.rules")
	env.modulesLoad = filepath.Join(dir, "modules-load.d", "authd-uhid.conf")
	var ran []string
	env.run = func(name string, args ...string) ([]byte, error) {
		ran = append(ran, name+" "+strings.Join(args, " "))
		if name == "modprobe" {
			return []byte("modprobe: FATAL: Module uhid not found"), errors.New("exit status 1")
		}
		return nil, nil
	}

	env.euid = func() int { return 1000 }
	var out bytes.Buffer
	c := &cli{stdout: &out, stderr: &out}
	if code := c.installUHID(env); code != exitFail || !strings.Contains(out.String(), "sudo authctl install --uhid") {
		t.Errorf("as a user: exit %d: %s", code, out.String())
	}
	if fileExists(env.rule) || len(ran) != 0 {
		t.Fatalf("as a user: wrote the rule or ran %q", ran)
	}

	env.euid = func() int { return 0 }
	var stdout, stderr bytes.Buffer
	c = &cli{stdout: &stdout, stderr: &stderr}
	if code := c.installUHID(env); code != exitOK {
		t.Fatalf("exit %d: %s %s", code, stdout.String(), stderr.String())
	}
	rule, err := os.ReadFile(env.rule)
	if err != nil || !strings.Contains(string(rule), `TAG+="uaccess"`) {
		t.Errorf("rule = %q, %v", rule, err)
	}
	if m, err := os.ReadFile(env.modulesLoad); err != nil || !strings.Contains(string(m), "\nuhid\n") {
		t.Errorf("modules-load = %q, %v", m, err)
	}
	if !strings.Contains(stdout.String(), "wrote "+env.rule) {
		t.Errorf("output: %s", stdout.String())
	}
	want := []string{"modprobe uhid", "udevadm control --reload", "udevadm trigger --name-match=uhid"}
	if strings.Join(ran, ";") != strings.Join(want, ";") {
		t.Errorf("ran %q, want %q", ran, want)
	}
	// A failing step is reported, not fatal: the files apply at the next boot.
	if !strings.Contains(stderr.String(), "Module uhid not found") {
		t.Errorf("stderr: %s", stderr.String())
	}
}
