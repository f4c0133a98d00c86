// Package test holds whole-daemon tests: the import rules of ARCHITECTURE.md,
// RP verification with go-webauthn, and benchmarks.
package test

import (
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/authd/authd/"

// deps lists the transitive dependencies of pkg (go list -deps).
func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", mod+pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}

// TestImportRules keeps the layering of ARCHITECTURE.md true.
func TestImportRules(t *testing.T) {
	rules := []struct {
		pkg       string
		forbidden []string // exact packages or prefixes ending in "/"
		why       string
	}{
		{"ctap2", []string{"net", "net/http", "os/exec", "github.com/godbus/", "github.com/google/go-tpm", mod + "ctaphid", mod + "uv", mod + "ipc", mod + "tpm", mod + "internal/daemon", mod + "internal/unixsock"},
			"the engine knows no transport, D-Bus or TPM"},
		{"ctap2/pinuv", []string{mod + "ctap2", mod + "keystore", mod + "ctaphid", mod + "uv"}, "PIN protocols are a leaf"},
		{"keystore", []string{mod + "ctap2", "github.com/google/go-tpm", mod + "tpm", "github.com/godbus/", mod + "ctaphid", mod + "uv", "net/http", "os/exec"},
			"the store must not know the engine, the TPM or D-Bus"},
		{"tpm", []string{mod + "keystore", mod + "ctap2", mod + "ctaphid", mod + "uv", mod + "ipc", mod + "internal/daemon", "github.com/godbus/"},
			"the TPM backend satisfies the keystore seams structurally"},
		{"ctaphid", []string{mod + "ctap2", mod + "keystore", mod + "uv", mod + "ipc", mod + "tpm", mod + "internal/daemon"}, "transports are leaves"},
		{"internal/uhid", []string{mod + "ctap2", mod + "keystore", mod + "ctaphid", mod + "uv", mod + "ipc", mod + "tpm", mod + "internal/daemon"}, "the uhid device is a report stream, a leaf like ctaphid"},
		{"uv", []string{mod + "ctap2", mod + "keystore", mod + "ctaphid", mod + "ipc", mod + "tpm", mod + "internal/daemon"}, "uv talks to people, not to the engine"},
		{"cmd/authctl", []string{mod + "ctap2", mod + "keystore", mod + "tpm", mod + "internal/daemon"}, "authctl is a thin client of the D-Bus API"},
		{"cmd/authd-nmhost", []string{mod + "ctap2", mod + "keystore", mod + "tpm", mod + "internal/daemon"}, "the native-messaging host only forwards to the D-Bus API"},
		{"cmd/authd-demo-rp", []string{mod + "ctap2", mod + "keystore", mod + "tpm", mod + "internal/daemon", mod + "ipc"}, "the demo relying party knows nothing of authd"},
		{"ipc/webauthn", []string{mod + "ctap2$", mod + "keystore", mod + "tpm", mod + "internal/daemon"}, "the WebAuthn client speaks CTAP bytes like any platform"},
	}
	for _, r := range rules {
		self := mod + r.pkg
		for _, d := range deps(t, r.pkg) {
			if d == self || strings.HasPrefix(d, self+"/") {
				continue
			}
			for _, f := range r.forbidden {
				// "pkg$" forbids pkg itself but not its subpackages.
				exact := strings.HasSuffix(f, "$")
				f := strings.TrimSuffix(f, "$")
				if d == f || (!exact && strings.HasPrefix(d, strings.TrimSuffix(f, "/")+"/")) {
					t.Errorf("%s depends on %s: %s", r.pkg, d, r.why)
				}
			}
		}
	}
}

// TestWiringOnlyInComposition checks that only cmd/* and internal/daemon import
// the composition-level packages.
func TestWiringOnlyInComposition(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, mod+"...").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg, imports := f[0], f[1:]
		wiring := strings.HasPrefix(pkg, mod+"cmd/") || pkg == mod+"internal/daemon" || strings.HasPrefix(pkg, mod+"test")
		for _, imp := range imports {
			if imp == mod+"internal/daemon" && !wiring {
				t.Errorf("%s imports internal/daemon; only cmd/* and tests may", pkg)
			}
			// The engine and the transports meet only in the composition root.
			if !wiring && imp == mod+"ctaphid" && pkg != mod+"ctaphid" {
				t.Errorf("%s imports ctaphid; only the composition root wires transports", pkg)
			}
			// So do the store and the TPM (cmd/* and internal/daemon only;
			// tests may, through their _test.go imports).
			if imp == mod+"tpm" && !strings.HasPrefix(pkg, mod+"cmd/") && pkg != mod+"internal/daemon" {
				t.Errorf("%s imports tpm; only cmd/* and internal/daemon may", pkg)
			}
			// The swtpm, fprintd, D-Bus and notification harnesses are for
			// tests only (one harness may build on another).
			harnesses := []string{"internal/swtpmtest", "internal/fprinttest", "uv/notify/notifytest", "ipc/dbus/dbustest"}
			isHarness := false
			for _, h := range harnesses {
				isHarness = isHarness || pkg == mod+h
			}
			for _, h := range harnesses {
				if imp == mod+h && !isHarness {
					t.Errorf("%s imports %s outside its tests", pkg, h)
				}
			}
		}
	}
}
