package unixsock

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// tempDir returns a short private directory: socket paths are limited to
// about 108 bytes, which t.TempDir can exceed.
func tempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "us")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func listen(t *testing.T, path string) net.Listener {
	t.Helper()
	ln, err := Listen(path)
	if err != nil {
		t.Fatalf("Listen(%s): %v", path, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func mode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode()
}

func TestListenCreatesPrivateDirAndSocket(t *testing.T) {
	dir := filepath.Join(tempDir(t), "a", "authd")
	path := filepath.Join(dir, "s.sock")
	ln := listen(t, path)

	if m := mode(t, dir); !m.IsDir() || m.Perm() != 0o700 {
		t.Errorf("directory mode %v, want drwx------", m)
	}
	if m := mode(t, path); m.Type() != fs.ModeSocket || m.Perm() != 0o600 {
		t.Errorf("socket mode %v, want Srw-------", m)
	}

	// It works, and closing the listener removes the socket.
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	ln.Close()
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket left behind after Close: %v", err)
	}
}

func TestListenRefusesOpenDir(t *testing.T) {
	for _, perm := range []fs.FileMode{0o750, 0o705, 0o777, 0o1777} {
		dir := filepath.Join(tempDir(t), "open")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, perm); err != nil {
			t.Fatal(err)
		}
		_, err := Listen(filepath.Join(dir, "s.sock"))
		if err == nil || !strings.Contains(err.Error(), "group or others") {
			t.Errorf("mode %v: Listen = %v, want a refusal", perm, err)
		}
	}
}

func TestListenRefusesDirOfOtherUser(t *testing.T) {
	dir := filepath.Join(tempDir(t), "theirs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	other := 65534
	if os.Getuid() == other {
		other--
	}
	if err := os.Chown(dir, other, other); err != nil {
		t.Skipf("cannot give the directory away (needs root): %v", err)
	}
	_, err := Listen(filepath.Join(dir, "s.sock"))
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("owned by uid %d", other)) {
		t.Fatalf("Listen = %v, want a refusal naming the owner", err)
	}
}

func TestListenRefusesNonDirParent(t *testing.T) {
	file := filepath.Join(tempDir(t), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(filepath.Join(file, "s.sock")); err == nil {
		t.Fatal("Listen under a regular file succeeded")
	}
}

func TestListenReplacesStaleSocket(t *testing.T) {
	path := filepath.Join(tempDir(t), "s.sock")
	// A socket whose process is gone: bound, never unlinked, closed.
	old, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	old.SetUnlinkOnClose(false)
	old.Close()
	if mode(t, path).Type() != fs.ModeSocket {
		t.Fatal("setup: no stale socket")
	}
	listen(t, path)
	if m := mode(t, path); m.Perm() != 0o600 {
		t.Errorf("socket mode %v", m)
	}
}

func TestListenRefusesLiveSocket(t *testing.T) {
	path := filepath.Join(tempDir(t), "s.sock")
	listen(t, path)
	_, err := Listen(path)
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "another process is listening on "+path) {
		t.Fatalf("Listen = %v, want ErrInUse", err)
	}
	if mode(t, path).Type() != fs.ModeSocket {
		t.Fatal("the live socket was removed")
	}
}

func TestListenRefusesNonSocket(t *testing.T) {
	dir := tempDir(t)
	for name, create := range map[string]func(string) error{
		"file":    func(p string) error { return os.WriteFile(p, []byte("keep me"), 0o600) },
		"dir":     func(p string) error { return os.Mkdir(p, 0o700) },
		"symlink": func(p string) error { return os.Symlink("/dev/null", p) },
		"fifo":    func(p string) error { return syscall.Mkfifo(p, 0o600) },
	} {
		path := filepath.Join(dir, name)
		if err := create(path); err != nil {
			t.Fatal(err)
		}
		before := mode(t, path)
		_, err := Listen(path)
		if err == nil || !strings.Contains(err.Error(), "not a socket") {
			t.Errorf("%s: Listen = %v, want a refusal", name, err)
		}
		if after := mode(t, path); after != before {
			t.Errorf("%s: file changed from %v to %v", name, before, after)
		}
	}
}

func TestPeerUID(t *testing.T) {
	path := filepath.Join(tempDir(t), "s.sock")
	ln := listen(t, path)
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	client, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server := <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	defer server.Close()

	for name, c := range map[string]net.Conn{"server side": server, "client side": client} {
		uid, err := PeerUID(c)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if uid != uint32(os.Getuid()) {
			t.Errorf("%s: PeerUID = %d, want %d", name, uid, os.Getuid())
		}
	}
}

func TestPeerUIDRejectsOtherConns(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if _, err := PeerUID(a); err == nil {
		t.Error("PeerUID(net.Pipe) succeeded")
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skipf("no TCP loopback: %v", err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := PeerUID(c); err == nil {
		t.Error("PeerUID(TCP) succeeded")
	}
}

// TestPeerUIDOtherUser connects as another user (needs root), which is what
// the daemon's same-UID check must notice.
func TestPeerUIDOtherUser(t *testing.T) {
	if path := os.Getenv("UNIXSOCK_TEST_DIAL"); path != "" {
		c, err := net.Dial("unix", path)
		if err != nil {
			os.Exit(3)
		}
		var b [1]byte
		c.Read(b[:]) // hold the connection until the parent closes it
		os.Exit(0)
	}
	if os.Getuid() != 0 {
		t.Skip("needs root to run a process as another user")
	}
	const other = 65534
	dir := tempDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "open.sock") // deliberately not made by Listen
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := os.Chmod(path, 0o777); err != nil {
		t.Fatal(err)
	}
	// The test binary's own directory is private to root: run a copy.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	helper := filepath.Join(dir, "helper")
	if err := os.WriteFile(helper, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(helper, "-test.run=^TestPeerUIDOtherUser$")
	cmd.Env = append(os.Environ(), "UNIXSOCK_TEST_DIAL="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: other, Gid: other}}
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot start a process as uid %d: %v", other, err)
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case c := <-accepted:
		if c == nil {
			t.Fatal("accept failed")
		}
		uid, err := PeerUID(c)
		c.Close() // lets the helper exit
		<-waited
		if err != nil {
			t.Fatal(err)
		}
		if uid != other {
			t.Fatalf("PeerUID = %d, want %d", uid, other)
		}
	case err := <-waited:
		t.Skipf("helper as uid %d could not connect (cannot execute the test binary?): %v", other, err)
	}
}
