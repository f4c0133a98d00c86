package ctaphid

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
)

// fakeDevice lets a test script the device side of a Client.
func fakeDevice(t *testing.T) (*Client, net.Conn) {
	t.Helper()
	host, dev := net.Pipe()
	t.Cleanup(func() { host.Close(); dev.Close() })
	c := NewClient(host)
	c.cid = 0x01020304
	return c, dev
}

// drain consumes one request report so the client's write completes.
func drain(t *testing.T, dev net.Conn) {
	t.Helper()
	var p packet
	if _, err := io.ReadFull(dev, p[:]); err != nil {
		t.Error(err)
	}
}

func TestClientSkipsOtherChannelsAndKeepalives(t *testing.T) {
	c, dev := fakeDevice(t)
	var statuses []byte
	c.Keepalive = func(st byte) { statuses = append(statuses, st) }
	go func() {
		drain(t, dev)
		msg := pattern(100)
		for _, p := range [][]byte{
			initPacket(0x0A0B0C0D, CmdPing, 3, []byte("abc")), // another host's channel
			initPacket(c.cid, CmdKeepalive, 1, []byte{1}),
			initPacket(c.cid, CmdKeepalive, 1, []byte{2}),
			initPacket(c.cid, CmdCBOR, len(msg), msg),
			contPacket(0x0A0B0C0D, 0, nil),
			contPacket(c.cid, 0, msg[57:]),
		} {
			if _, err := dev.Write(p); err != nil {
				t.Error(err)
			}
		}
	}()
	cmd, data, err := c.Call(ctxT(t), CmdCBOR, []byte{4})
	if err != nil || cmd != CmdCBOR || !bytes.Equal(data, pattern(100)) {
		t.Fatalf("cmd %#x data %x err %v", cmd, data, err)
	}
	if !bytes.Equal(statuses, []byte{1, 2}) {
		t.Fatalf("keepalives %v", statuses)
	}
}

func TestClientRejectsMalformedResponses(t *testing.T) {
	for name, reports := range map[string][][]byte{
		"bad seq":       {initPacket(0x01020304, CmdPing, 100, nil), contPacket(0x01020304, 1, nil)},
		"init mid-msg":  {initPacket(0x01020304, CmdPing, 100, nil), initPacket(0x01020304, CmdPing, 1, nil)},
		"too long":      {initPacket(0x01020304, CmdPing, MaxPayload+1, nil)},
		"empty error":   {initPacket(0x01020304, CmdError, 0, nil)},
		"closed stream": {},
	} {
		t.Run(name, func(t *testing.T) {
			c, dev := fakeDevice(t)
			go func() {
				drain(t, dev)
				for _, p := range reports {
					if _, err := dev.Write(p); err != nil {
						t.Error(err)
					}
				}
				dev.Close()
			}()
			if _, _, err := c.Call(ctxT(t), CmdPing, nil); err == nil {
				t.Fatal("Call succeeded")
			}
		})
	}
}

func TestClientContextCancel(t *testing.T) {
	h := newBlockingHandler()
	s := newTestServer(h)
	ss := dial(t, s)
	ss.initCID()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		recvOrFail(t, h.started, "handler start")
		cancel()
	}()
	if _, _, err := ss.c.Call(ctx, CmdCBOR, []byte{2}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Call = %v, want context.Canceled", err)
	}
	// The read deadline was restored: the client still works after a resync.
	cid := ss.c.CID()
	ss.send(cid, CmdInit, []byte("resync!!"))
	if cmd, _ := ss.recv(cid); cmd != CmdInit {
		t.Fatalf("got cmd %#x, want INIT", cmd)
	}
	ss.expectPing(cid)
	if _, _, err := ss.c.Call(ctx, CmdPing, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Call with a done context = %v", err)
	}
}

// plainRW hides deadlines and Close from both ends.
type plainRW struct {
	io.Reader
	io.Writer
}

func TestWithoutDeadlines(t *testing.T) {
	s := newTestServer(echoHandler)
	srv, cli := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- s.ServeConn(context.Background(), plainRW{srv, srv}) }()
	c := NewClient(plainRW{cli, cli})
	if _, err := c.Init(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if cmd, data, err := c.Call(ctxT(t), CmdCBOR, []byte{9}); err != nil || cmd != CmdCBOR || !bytes.Equal(data, []byte{0, 9}) {
		t.Fatalf("cmd %#x data %x err %v", cmd, data, err)
	}
	cli.Close()
	if err := recvOrFail(t, done, "ServeConn return"); err != nil {
		t.Fatal(err)
	}
}

func TestZeroServer(t *testing.T) {
	s := &Server{Handler: echoHandler}
	ss := dial(t, s)
	ss.initCID()
	if cmd, data, err := ss.c.Call(ctxT(t), CmdCBOR, []byte{7}); err != nil || cmd != CmdCBOR || !bytes.Equal(data, []byte{0, 7}) {
		t.Fatalf("cmd %#x data %x err %v", cmd, data, err)
	}
	if s.KeepaliveInterval != DefaultKeepaliveInterval || s.MessageTimeout != DefaultMessageTimeout {
		t.Fatalf("defaults not applied: %v %v", s.KeepaliveInterval, s.MessageTimeout)
	}
}

func TestSlowPeerIsDropped(t *testing.T) {
	ss := dial(t, newTestServer(echoHandler))
	cid := ss.initCID()
	go func() {
		for {
			if err := writeMessage(ss.conn, cid, CmdPing, pattern(MaxPayload)); err != nil {
				return
			}
		}
	}()
	recvOrFail(t, ss.done, "ServeConn return")
	if !errors.Is(ss.err, errSlowPeer) {
		t.Fatalf("ServeConn = %v, want errSlowPeer", ss.err)
	}
}

func TestKeepalivesCoalesce(t *testing.T) {
	c := &conn{wake: make(chan struct{}, 1), cancel: func(error) {}}
	for st := range byte(100) {
		c.send(7, CmdKeepalive, []byte{st})
	}
	c.send(8, CmdKeepalive, []byte{1})
	if len(c.q) != 2 || c.q[0].data[0] != 99 {
		t.Fatalf("queue %+v", c.q)
	}
}

func TestErrorCodeString(t *testing.T) {
	if got := ErrChannelBusy.Error(); !strings.Contains(got, "ERR_CHANNEL_BUSY") {
		t.Errorf("%q", got)
	}
	if got := ErrorCode(0x42).Error(); !strings.Contains(got, "0x42") {
		t.Errorf("%q", got)
	}
}
