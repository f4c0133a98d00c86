// Package unixsock creates the daemon's private Unix stream socket and
// identifies the processes that connect to it.
//
// Access control has two layers. Listen puts the socket, mode 0600, in a
// directory of mode 0700 owned by the daemon's user, so the kernel refuses
// other users' connect(2). As defence in depth the daemon also checks every
// accepted connection with PeerUID and closes it unless the peer runs as the
// daemon's own UID:
//
//	conn, err := ln.Accept()
//	...
//	if uid, err := unixsock.PeerUID(conn); err != nil || uid != uint32(os.Getuid()) {
//		conn.Close() // another user (or root) reached the socket
//		continue
//	}
//
// The credentials are those the peer had at connect(2) time, taken by the
// kernel (SO_PEERCRED), so the peer cannot forge them. The package is
// Linux-only, like SO_PEERCRED.
package unixsock

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrInUse is wrapped by Listen's error when a live process already listens
// on the path.
var ErrInUse = errors.New("socket in use")

// probeTimeout bounds the connect used to tell a live socket from a stale one.
const probeTimeout = time.Second

// Listen listens on a Unix stream socket at path, mode 0600.
//
// The parent directory is created with mode 0700 if missing; an existing one
// must be a directory owned by the current user and not accessible to group
// or others, since anyone who can write to it could replace the socket. A
// stale socket left by a dead process is replaced; a socket another process
// listens on yields an error wrapping ErrInUse; any other kind of file at
// path is left alone and reported.
//
// Closing the listener removes the socket file.
func Listen(path string) (net.Listener, error) {
	if err := checkDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("unixsock: listen on %s: %w", path, err)
	}
	// bind(2) applies the umask, so the socket may briefly be more open than
	// 0600; nobody else can reach it meanwhile, through our 0700 directory.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("unixsock: chmod %s: %w", path, err)
	}
	return ln, nil
}

// checkDir creates dir (0700) if missing and checks that only we can use it.
func checkDir(dir string) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("unixsock: create socket directory: %w", err)
		}
		fi, err = os.Stat(dir)
	}
	if err != nil {
		return fmt.Errorf("unixsock: socket directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("unixsock: socket directory %s is not a directory", dir)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("unixsock: socket directory %s: cannot read its owner", dir)
	}
	if uid := os.Getuid(); st.Uid != uint32(uid) {
		return fmt.Errorf("unixsock: socket directory %s is owned by uid %d, not by uid %d", dir, st.Uid, uid)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("unixsock: socket directory %s has mode %04o; it must not be accessible to group or others (chmod 700 it)", dir, perm)
	}
	return nil
}

// removeStale removes a socket at path that nobody listens on.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("unixsock: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("unixsock: %s exists and is not a socket; refusing to replace it", path)
	}
	c, err := net.DialTimeout("unix", path, probeTimeout)
	if err == nil {
		c.Close()
		return fmt.Errorf("unixsock: another process is listening on %s: %w", path, ErrInUse)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("unixsock: probe existing socket %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("unixsock: remove stale socket: %w", err)
	}
	return nil
}

// PeerUID returns the user ID of the process at the other end of conn, a
// Unix socket connection, as recorded by the kernel at connect time
// (SO_PEERCRED).
func PeerUID(conn net.Conn) (uint32, error) {
	uid, _, err := PeerCred(conn)
	return uid, err
}

// PeerCred returns the user ID and process ID of the peer of conn, as the
// kernel recorded them at connect time (SO_PEERCRED).
func PeerCred(conn net.Conn) (uid uint32, pid int32, err error) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return 0, 0, fmt.Errorf("unixsock: peer credentials: %T is not a socket", conn)
	}
	if _, ok := conn.LocalAddr().(*net.UnixAddr); !ok {
		return 0, 0, fmt.Errorf("unixsock: peer credentials: %T is not a Unix socket", conn)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return 0, 0, fmt.Errorf("unixsock: peer credentials: %w", err)
	}
	var cred *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, 0, fmt.Errorf("unixsock: peer credentials: %w", err)
	}
	if serr != nil {
		return 0, 0, fmt.Errorf("unixsock: peer credentials: %w", serr)
	}
	return cred.Uid, cred.Pid, nil
}
