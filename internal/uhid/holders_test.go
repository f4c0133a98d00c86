package uhid

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"
)

// TestHoldersProc finds a child process holding a file, in the real /proc.
func TestHoldersProc(t *testing.T) {
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("no /proc:", err)
		}
		t.Skip("no /proc:", err)
	}
	path := filepath.Join(t.TempDir(), "hidraw-stand-in")
	f, err := os.Create(path) // held open by this process too, which must not count
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command("sleep", "60")
	cmd.Stdin = f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()

	start := time.Now()
	procs, err := Holders("/proc", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d holders in %v", len(procs), time.Since(start))
	i := slices.IndexFunc(procs, func(p Process) bool { return p.PID == cmd.Process.Pid })
	if i < 0 {
		t.Fatalf("child %d not among %+v", cmd.Process.Pid, procs)
	}
	if p := procs[i]; p.Comm != "sleep" || filepath.Base(p.Exe) != "sleep" {
		t.Errorf("child %+v, want comm and exe sleep", p)
	}
	if slices.ContainsFunc(procs, func(p Process) bool { return p.PID == os.Getpid() }) {
		t.Error("the calling process is listed")
	}
}

// fakeProc builds a /proc-like tree.
func fakeProc(t *testing.T, dev string, self int) string {
	t.Helper()
	root := t.TempDir()
	link := func(target, name string) {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	writeTree(t, root, map[string]string{"300/comm": "firefox-esr\n", "42/comm": "ssh\n", "abc/comm": "x\n"})
	link("/usr/lib/firefox-esr/firefox-esr", "300/exe")
	link("/dev/null", "300/fd/0")
	link("socket:[1234]", "300/fd/1")
	link(dev, "300/fd/57")
	link(dev, "300/fd/58") // listed once
	link(dev, "42/fd/3")   // no exe link: not readable for this user
	link("/dev/hidraw1", "43/fd/3")
	link(dev, "abc/fd/3")                                                 // not a process
	link(dev, filepath.Join(strconv.Itoa(self), "fd", "9"))               // the caller
	if err := os.MkdirAll(filepath.Join(root, "44"), 0o755); err != nil { // fd unreadable or gone
		t.Fatal(err)
	}
	return root
}

func TestHoldersFake(t *testing.T) {
	const dev, self = "/dev/hidraw5", 7
	root := fakeProc(t, dev, self)
	procs, err := holders(root, dev, self, 1000, time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	want := []Process{{PID: 42, Comm: "ssh"}, {PID: 300, Comm: "firefox-esr", Exe: "/usr/lib/firefox-esr/firefox-esr"}}
	if !slices.Equal(procs, want) {
		t.Fatalf("got %+v, want %+v", procs, want)
	}

	// At the bound, what was found so far comes with ErrScanLimit: "300"
	// is read first, its third link is the device, then the scan stops.
	procs, err = holders(root, dev, self, 3, time.Now().Add(time.Minute))
	if !errors.Is(err, ErrScanLimit) || len(procs) != 1 || procs[0].PID != 300 {
		t.Fatalf("limited scan: %+v, %v", procs, err)
	}
	if _, err := holders(root, dev, self, 1000, time.Now().Add(-time.Second)); !errors.Is(err, ErrScanLimit) {
		t.Fatalf("scan past its deadline: %v", err)
	}
	if _, err := holders(filepath.Join(root, "missing"), dev, self, 1000, time.Now().Add(time.Minute)); err == nil {
		t.Fatal("missing proc root: no error")
	}
}
