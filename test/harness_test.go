package test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net"
	"path/filepath"
	"testing"

	"github.com/authd/authd/ctaphid"
	"github.com/authd/authd/internal/cbor"
	"github.com/authd/authd/internal/daemon"
	"github.com/authd/authd/internal/unixsock"
)

// approve is the tests' presence: it approves everything. It exists only in
// test code; the daemon's --presence allow is the production equivalent.
type approve struct{}

func (approve) ConfirmPresence(context.Context, string, string, string) error { return nil }

// daemonT is a whole authd (store, engine, CTAPHID over a Unix socket) built by
// internal/daemon, exactly as cmd/authd builds it.
type daemonT struct {
	d    *daemon.Daemon
	sock string
	stop func()
}

func startDaemon(tb testing.TB) *daemonT {
	tb.Helper()
	dir := tb.TempDir()
	d, err := daemon.New(daemon.Config{StateDir: filepath.Join(dir, "state"), Presence: approve{}, BootID: "test-boot"})
	if err != nil {
		tb.Fatal(err)
	}
	sock := filepath.Join(dir, "run", "ctaphid.sock")
	ln, err := unixsock.Listen(sock)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.ServeCTAPHID(ctx, ln) }()
	dt := &daemonT{d: d, sock: sock}
	dt.stop = func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("serve: %v", err)
		}
		if err := d.Close(); err != nil {
			tb.Errorf("close: %v", err)
		}
	}
	tb.Cleanup(dt.stop)
	return dt
}

// client dials the socket and allocates a CTAPHID channel.
func (dt *daemonT) client(tb testing.TB) *ctaphid.Client {
	tb.Helper()
	conn, err := net.Dial("unix", dt.sock)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	c := ctaphid.NewClient(conn)
	if _, err := c.Init(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return c
}

// ctap sends one CTAP2 command over CTAPHID_CBOR and decodes the response.
func ctap(tb testing.TB, c *ctaphid.Client, cmd byte, params any) (byte, map[int]any) {
	tb.Helper()
	msg := []byte{cmd}
	if params != nil {
		b, err := cbor.Marshal(params)
		if err != nil {
			tb.Fatal(err)
		}
		msg = append(msg, b...)
	}
	rc, resp, err := c.Call(context.Background(), ctaphid.CmdCBOR, msg)
	if err != nil || rc != ctaphid.CmdCBOR || len(resp) == 0 {
		tb.Fatalf("CTAPHID call: cmd %x err %v", rc, err)
	}
	if resp[0] != 0 || len(resp) == 1 {
		return resp[0], nil
	}
	var m map[int]any
	if err := cbor.UnmarshalRecord(resp[1:], &m); err != nil {
		tb.Fatalf("response: %v", err)
	}
	return 0, m
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// clientData builds CollectedClientData JSON (WebAuthn L3 §5.8.1) as a browser would.
func clientData(tb testing.TB, typ, challenge, origin string) ([]byte, []byte) {
	tb.Helper()
	j, err := json.Marshal(map[string]any{"type": typ, "challenge": challenge, "origin": origin, "crossOrigin": false})
	if err != nil {
		tb.Fatal(err)
	}
	h := sha256.Sum256(j)
	return j, h[:]
}
