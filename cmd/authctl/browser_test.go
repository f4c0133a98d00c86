package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/authd/authd/internal/nmhost"
	dbusapi "github.com/authd/authd/ipc/dbus"
	"github.com/authd/authd/ipc/dbus/dbustest"
)

const testExtID = "bcdefghijklmnopabcdefghijklmnopa"

func buildHost(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "bin", "authd-nmhost")
	if out, err := exec.Command("go", "build", "-o", bin, "../authd-nmhost").CombinedOutput(); err != nil {
		t.Fatalf("go build authd-nmhost: %v\n%s", err, out)
	}
	return bin
}

func readManifest(t *testing.T, path string) manifest {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("%s has mode %04o, want 0644", path, fi.Mode().Perm())
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if m.Name+".json" != filepath.Base(path) || m.Type != "stdio" || !filepath.IsAbs(m.Path) {
		t.Errorf("%s: %+v", path, m)
	}
	return m
}

func TestBrowserInstall(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("HOME", dir)
	t.Setenv("XDG_CONFIG_HOME", "")
	host := buildHost(t, dir)
	udd := filepath.Join(dir, "udd", "NativeMessagingHosts")
	ctx := context.Background()

	var out, errb bytes.Buffer
	for _, args := range [][]string{
		{"browser"}, {"browser", "frob"}, {"browser", "install", "--extension-id", "chrome-extension://x/"},
		{"browser", "install", "--host"}, {"browser", "uninstall", "--host", host},
	} {
		if code := run(ctx, args, &out, &errb); code != exitUsage {
			t.Errorf("%q: exit %d", args, code)
		}
	}
	errb.Reset()
	if code := run(ctx, []string{"browser", "install", "--host", filepath.Join(dir, "nope")}, &out, &errb); code != exitFail ||
		!strings.Contains(errb.String(), "no authd-nmhost executable") {
		t.Errorf("missing host: %d %s", code, errb.String())
	}

	out.Reset()
	errb.Reset()
	if code := run(ctx, []string{"browser", "install", "--host", host, "--extension-id", testExtID, "--dir", udd}, &out, &errb); code != exitOK {
		t.Fatalf("install: %d %s", code, errb.String())
	}
	chromium := filepath.Join(dir, ".config", "chromium", "NativeMessagingHosts", "org.authd.nmhost.json")
	chrome := filepath.Join(dir, ".config", "google-chrome", "NativeMessagingHosts", "org.authd.nmhost.json")
	firefox := filepath.Join(dir, ".mozilla", "native-messaging-hosts", "org.authd.nmhost.json")
	for _, p := range []string{chromium, chrome, filepath.Join(udd, "org.authd.nmhost.json")} {
		m := readManifest(t, p)
		if m.Path != host || len(m.AllowedOrigins) != 1 || m.AllowedOrigins[0] != "chrome-extension://"+testExtID+"/" || m.AllowedExtensions != nil {
			t.Errorf("%s: %+v", p, m)
		}
	}
	if m := readManifest(t, firefox); len(m.AllowedExtensions) != 1 || m.AllowedExtensions[0] != nmhost.DefaultFirefoxID || m.AllowedOrigins != nil {
		t.Errorf("firefox: %+v", m)
	}
	cfg, err := nmhost.LoadConfig(filepath.Join(dir, ".config", "authd", "nmhost.json"))
	if err != nil || len(cfg.AllowedOrigins) != 1 || cfg.AllowedOrigins[0] != nmhost.ChromeOrigin(testExtID) {
		t.Errorf("host config: %+v %v", cfg, err)
	}

	// doctor reads each manifest and starts each host the browser's way
	// (Chromium: the extension's origin; Firefox: manifest path and
	// extension id) to ask for authd's status.
	bus := dbustest.NewBus(t)
	srv, err := dbusapi.Start(bus.Connect(), fixture(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	doctor := func(addr string, want ...string) string {
		t.Helper()
		out.Reset()
		run(ctx, []string{"--bus", addr, "doctor"}, &out, &errb)
		for _, re := range want {
			if !regexp.MustCompile(re).MatchString(out.String()) {
				t.Errorf("doctor lacks %s:\n%s", re, out.String())
			}
		}
		return out.String()
	}
	authdOrigin := regexp.QuoteMeta(nmhost.ChromeOrigin(nmhost.DefaultExtensionID))
	// Installed for another extension id only: authd's own extension cannot
	// start the host, though the host answers that other extension.
	doctor(bus.Addr,
		`(?m)^warn +NM Chromium +`+regexp.QuoteMeta(chromium)+` allows chrome-extension://`+testExtID+`/ but not authd's extension `+authdOrigin,
		`(?m)^ok +host Chromium +answers, and reaches authd`,
		`(?m)^ok +NM Firefox +`+regexp.QuoteMeta(firefox)+` → `+regexp.QuoteMeta(host)+` \(allows passkeys@authd\.org\)`,
		`(?m)^ok +host Firefox +answers, and reaches authd`)
	// The default install allows authd's extension everywhere.
	if code := run(ctx, []string{"browser", "install", "--host", host}, &out, &errb); code != exitOK {
		t.Fatalf("install: %d %s", code, errb.String())
	}
	got := doctor(bus.Addr,
		`(?m)^ok +NM Chromium +`+regexp.QuoteMeta(chromium)+` → `+regexp.QuoteMeta(host)+` \(allows `+authdOrigin+`\)`,
		`(?m)^ok +NM Google Chrome +`+regexp.QuoteMeta(chrome)+` → .*\(allows `+authdOrigin+`\)`,
		`(?m)^ok +NM Firefox `,
		`(?m)^ok +host Chromium +answers, and reaches authd`,
		`(?m)^ok +host Google Chrome +answers, and reaches authd`,
		`(?m)^ok +host Firefox +answers, and reaches authd`)
	if strings.Contains(got, "FAIL") || strings.Contains(got, "warn  NM") {
		t.Errorf("doctor after a default install:\n%s", got)
	}
	// Without authd on the bus the hosts still answer: NotReachable.
	empty := dbustest.NewBus(t)
	doctor(empty.Addr,
		`(?m)^warn +host Chromium +answers, but cannot reach authd`,
		`(?m)^warn +host Firefox +answers, but cannot reach authd`)
	// A host that refuses the caller: a Firefox manifest for an extension
	// the host's allow-list does not name.
	m := readManifest(t, firefox)
	m.AllowedExtensions = []string{"evil@example.org"}
	b, _ := json.Marshal(m)
	os.WriteFile(firefox, b, 0o644)
	doctor(bus.Addr,
		`(?m)^warn +NM Firefox .*allows evil@example\.org but not authd's extension passkeys@authd\.org`,
		`(?m)^FAIL +host Firefox +.*exited without answering.*not allowed to use authd`)
	// Broken manifests.
	m = readManifest(t, chromium)
	m.AllowedOrigins = []string{"chrome-extension://" + testExtID}
	b, _ = json.Marshal(m)
	os.WriteFile(chromium, b, 0o644)
	os.Chmod(host, 0o644)
	got = doctor(bus.Addr,
		`(?m)^FAIL +NM Chromium .*(trailing slash|not executable)`,
		`(?m)^FAIL +NM Firefox .*not executable`)
	if strings.Contains(got, "host Chromium") {
		t.Errorf("doctor probed the host of a broken manifest:\n%s", got)
	}
	os.Chmod(host, 0o755)

	out.Reset()
	if code := run(ctx, []string{"browser", "uninstall", "--dir", udd}, &out, &errb); code != exitOK {
		t.Fatalf("uninstall: %d %s", code, errb.String())
	}
	for _, p := range []string{chromium, chrome, firefox, filepath.Join(udd, "org.authd.nmhost.json"), filepath.Join(dir, ".config", "authd", "nmhost.json")} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s still there", p)
		}
	}
	got = doctor(bus.Addr, `(?m)^info +NM Chromium .*not installed \(run .authctl browser install.\)`,
		`(?m)^info +NM Firefox .*not installed`)
	if strings.Contains(got, "host ") {
		t.Errorf("doctor after uninstall probed a host:\n%s", got)
	}
}

// TestBrowserDefaultID: without --extension-id the pinned default is allowed.
func TestBrowserDefaultID(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("HOME", dir)
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "cfg"))
	host := filepath.Join(dir, "host")
	os.WriteFile(host, []byte("#!/bin/sh\n"), 0o755)
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"browser", "install", "--host=" + host}, &out, &errb); code != exitOK {
		t.Fatalf("install: %d %s", code, errb.String())
	}
	m := readManifest(t, filepath.Join(dir, "cfg", "chromium", "NativeMessagingHosts", "org.authd.nmhost.json"))
	if m.AllowedOrigins[0] != nmhost.ChromeOrigin(nmhost.DefaultExtensionID) {
		t.Errorf("default origin: %+v", m)
	}
}
