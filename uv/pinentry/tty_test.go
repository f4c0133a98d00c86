package pinentry

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY returns a pseudo-terminal's master and the path of its slave. The
// master stays in Go's poller (no Fd call), so closing it ends a blocked
// Read.
func openPTY(t *testing.T) (*os.File, string) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	rc, err := m.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n uint32
	var ioErr error
	if err := rc.Control(func(fd uintptr) {
		if ioErr = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); ioErr != nil {
			return
		}
		n, ioErr = unix.IoctlGetUint32(int(fd), unix.TIOCGPTN)
	}); err != nil {
		t.Fatal(err)
	}
	if ioErr != nil {
		t.Fatalf("unlocking the pty: %v", ioErr)
	}
	return m, fmt.Sprintf("/dev/pts/%d", n)
}

// screen collects what pinentry writes to the terminal.
type screen struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (s *screen) read(m *os.File) {
	b := make([]byte, 1024)
	for {
		n, err := m.Read(b)
		s.mu.Lock()
		s.buf.Write(b[:n])
		s.mu.Unlock()
		if err != nil {
			return // EIO once pinentry closes the slave, or the master closed
		}
	}
}

func (s *screen) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func realPinentryTTY(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("pinentry-tty")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("pinentry-tty is missing (apt-get install pinentry-tty; scripts/test.sh installs it)")
		}
		t.Skip("pinentry-tty is not installed")
	}
	return path
}

// TestPinentryTTY drives the real pinentry-tty on a pseudo-terminal: it
// types a PIN containing '%' for GETPIN, then answers CONFIRM both ways.
func TestPinentryTTY(t *testing.T) {
	path := realPinentryTTY(t)
	tctx := testCtx(t)

	t.Run("GETPIN", func(t *testing.T) {
		m, tty := openPTY(t)
		scr := &screen{}
		go scr.read(m)
		p := Program{Path: path, Env: []string{"GPG_TTY=" + tty, "TERM=dumb"}}
		type result struct {
			pin *Secret
			err error
		}
		res := make(chan result, 1)
		go func() {
			pin, err := p.GetPIN(tctx, Prompt{Title: "authd", Description: "Enter the authd PIN\nfor example.com (100% local)", Prompt: "PIN:"})
			res <- result{pin, err}
		}()
		eventually(t, tctx, "the PIN prompt", func() bool { return strings.Contains(scr.String(), "PIN:") })
		if _, err := m.WriteString("12%4567\r"); err != nil {
			t.Fatal(err)
		}
		var r result
		select {
		case r = <-res:
		case <-tctx.Done():
			t.Fatalf("GetPIN did not return; terminal shows %q", scr.String())
		}
		if r.err != nil {
			t.Fatalf("GetPIN = %v; terminal shows %q", r.err, scr.String())
		}
		defer r.pin.Clear()
		if !r.pin.Equal([]byte("12%4567")) {
			t.Errorf("PIN = %q, want 12%%4567", r.pin.Bytes())
		}
		shown := scr.String()
		if !strings.Contains(shown, "Enter the authd PIN") || !strings.Contains(shown, "(100% local)") {
			t.Errorf("terminal shows %q", shown)
		}
		if strings.Contains(shown, "12%4567") {
			t.Errorf("the PIN was echoed: %q", shown)
		}
	})

	for _, tt := range []struct {
		key  string
		want bool
	}{{"a", true}, {"d", false}} {
		t.Run("CONFIRM "+tt.key, func(t *testing.T) {
			m, tty := openPTY(t)
			scr := &screen{}
			go scr.read(m)
			p := Program{Path: path, Env: []string{"GPG_TTY=" + tty, "TERM=dumb"}}
			type result struct {
				ok  bool
				err error
			}
			res := make(chan result, 1)
			go func() {
				ok, err := p.Confirm(tctx, Prompt{Description: `Sign in to example.com as "alice"?`, OK: "Allow", Cancel: "Deny"})
				res <- result{ok, err}
			}()
			// pinentry-tty lists the buttons and asks for a first letter: "[ad]? ".
			eventually(t, tctx, "the confirmation prompt", func() bool { return strings.Contains(scr.String(), "[ad]") })
			if _, err := m.WriteString(tt.key); err != nil {
				t.Fatal(err)
			}
			select {
			case r := <-res:
				if r.ok != tt.want || r.err != nil {
					t.Fatalf("Confirm = %v, %v; want %v; terminal shows %q", r.ok, r.err, tt.want, scr.String())
				}
			case <-tctx.Done():
				t.Fatalf("Confirm did not return; terminal shows %q", scr.String())
			}
		})
	}

	t.Run("cancelled while prompting", func(t *testing.T) {
		m, tty := openPTY(t)
		scr := &screen{}
		go scr.read(m)
		ctx, cancel := context.WithCancel(tctx)
		defer cancel()
		res := make(chan error, 1)
		go func() {
			_, err := Program{Path: path, Env: []string{"GPG_TTY=" + tty}}.GetPIN(ctx, Prompt{Prompt: "PIN:"})
			res <- err
		}()
		eventually(t, tctx, "the PIN prompt", func() bool { return strings.Contains(scr.String(), "PIN:") })
		cancel()
		select {
		case err := <-res:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("GetPIN = %v, want context.Canceled", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("GetPIN did not return after cancellation")
		}
	})

	t.Run("no terminal", func(t *testing.T) {
		// Without GPG_TTY, and with no controlling terminal (setsid), the
		// prompt cannot be shown: pinentry-tty answers "cancelled".
		_, err := Program{Path: path, Env: []string{"GPG_TTY="}}.GetPIN(tctx, Prompt{})
		if !errors.Is(err, ErrCancelled) {
			t.Fatalf("GetPIN = %v, want ErrCancelled", err)
		}
	})
}
