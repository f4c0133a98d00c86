package test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/authd/authd/ctaphid"
	"github.com/authd/authd/internal/daemon"
	"github.com/authd/authd/internal/unixsock"
	"github.com/authd/authd/keystore"
	"github.com/authd/authd/uv"
)

// waitPresence blocks every presence request until its context ends, and
// signals when one starts.
type waitPresence struct{ started chan string }

func (w waitPresence) ConfirmPresence(ctx context.Context, op, rpID, user string) error {
	w.started <- op
	<-ctx.Done()
	return ctx.Err()
}

func startWith(t *testing.T, dir string, p waitPresence) (sock string, stop func()) {
	d, err := daemon.New(daemon.Config{StateDir: filepath.Join(dir, "state"), Presence: p, BootID: "b"})
	if err != nil {
		t.Fatal(err)
	}
	sock = filepath.Join(dir, "run", "s.sock")
	ln, err := unixsock.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.ServeCTAPHID(ctx, ln) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
			if err := d.Close(); err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(stop)
	return sock, stop
}

func dialClient(t *testing.T, sock string) *ctaphid.Client {
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := ctaphid.NewClient(conn)
	if _, err := c.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestCancelWhileWaitingForUser: keepalives say UPNEEDED while the user is
// asked; CTAPHID_CANCEL ends the request with CTAP2_ERR_KEEPALIVE_CANCEL and
// the daemon keeps serving.
func TestCancelWhileWaitingForUser(t *testing.T) {
	p := waitPresence{started: make(chan string, 4)}
	sock, _ := startWith(t, t.TempDir(), p)
	c := dialClient(t, sock)
	var mu sync.Mutex
	var statuses []byte
	c.Keepalive = func(s byte) { mu.Lock(); statuses = append(statuses, s); mu.Unlock() }
	res := make(chan []byte, 1)
	go func() {
		_, resp, err := c.Call(context.Background(), ctaphid.CmdCBOR, mcMessage(t, true, 7))
		if err != nil {
			t.Error(err)
		}
		res <- resp
	}()
	if op := <-p.started; op != "makeCredential" {
		t.Fatalf("presence op %q", op)
	}
	// Wait for at least one UPNEEDED keepalive before cancelling.
	for {
		mu.Lock()
		n := len(statuses)
		var up bool
		for _, s := range statuses {
			up = up || s == ctaphid.KeepaliveUPNeeded
		}
		mu.Unlock()
		if n > 0 && up {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := c.Cancel(); err != nil {
		t.Fatal(err)
	}
	if resp := <-res; len(resp) != 1 || resp[0] != 0x2d {
		t.Fatalf("cancelled request answered %x, want 2d", resp)
	}
	// Still serving: getInfo on a new connection.
	if _, resp, err := dialClient(t, sock).Call(context.Background(), ctaphid.CmdCBOR, []byte{0x04}); err != nil || resp[0] != 0 {
		t.Fatalf("getInfo after cancel: %v %x", err, resp)
	}
}

// TestShutdownWithOperationInFlight: stopping the daemon while it waits for
// the user cancels the operation, closes the store and releases the state
// directory; a second daemon on a directory in use is refused.
func TestShutdownWithOperationInFlight(t *testing.T) {
	dir := t.TempDir()
	p := waitPresence{started: make(chan string, 4)}
	sock, stop := startWith(t, dir, p)
	if _, err := daemon.New(daemon.Config{StateDir: filepath.Join(dir, "state"), Presence: p}); !errors.Is(err, keystore.ErrLocked) {
		t.Fatalf("second daemon on the same state dir: %v, want ErrLocked", err)
	}
	c := dialClient(t, sock)
	go c.Call(context.Background(), ctaphid.CmdCBOR, mcMessage(t, true, 7))
	<-p.started
	stop()
	d, err := daemon.New(daemon.Config{StateDir: filepath.Join(dir, "state"), Presence: p})
	if err != nil {
		t.Fatalf("reopen after shutdown: %v", err)
	}
	if n := d.Store().DiscoverableCount(); n != 0 {
		t.Fatalf("cancelled makeCredential stored a credential (%d)", n)
	}
	d.Close()
}

// recordRequester remembers which program the presence prompt would name.
type recordRequester struct{ got chan string }

func (r recordRequester) ConfirmPresence(ctx context.Context, op, rpID, user string) error {
	r.got <- uv.Requester(ctx)
	return nil
}

// TestPresenceNamesTheRequester: the program on the other end of the socket
// (SO_PEERCRED) is named in presence prompts.
func TestPresenceNamesTheRequester(t *testing.T) {
	dir := t.TempDir()
	r := recordRequester{got: make(chan string, 1)}
	d, err := daemon.New(daemon.Config{StateDir: filepath.Join(dir, "state"), Presence: r, BootID: "b"})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "run", "s.sock")
	ln, err := unixsock.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.ServeCTAPHID(ctx, ln) }()
	defer func() { cancel(); <-done; d.Close() }()
	c := dialClient(t, sock)
	if _, resp, err := c.Call(context.Background(), ctaphid.CmdCBOR, mcMessage(t, false, 1)); err != nil || resp[0] != 0 {
		t.Fatalf("makeCredential: %v", err)
	}
	exe, _ := os.Executable()
	if got := <-r.got; got != filepath.Base(exe) {
		t.Fatalf("requester %q, want %q", got, filepath.Base(exe))
	}
}
