package ctaphid

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestInitBroadcast(t *testing.T) {
	s := newTestServer(echoHandler)
	ss := dial(t, s)

	nonce := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	ss.send(BroadcastCID, CmdInit, nonce)
	cmd, data := ss.recv(BroadcastCID)
	if cmd != CmdInit || len(data) != 17 {
		t.Fatalf("got cmd %#x len %d, want INIT response of 17 bytes", cmd, len(data))
	}
	if !bytes.Equal(data[:8], nonce) {
		t.Errorf("nonce %x, want %x", data[:8], nonce)
	}
	if data[12] != 2 {
		t.Errorf("protocol version %d, want 2", data[12])
	}
	if !bytes.Equal(data[13:16], []byte{1, 2, 3}) {
		t.Errorf("device version %v, want 1.2.3", data[13:16])
	}
	if data[16] != 0x0D {
		t.Errorf("capabilities %#x, want 0x0D (WINK|CBOR|NMSG)", data[16])
	}

	seen := map[uint32]bool{binary.BigEndian.Uint32(data[8:12]): true}
	for range 20 {
		info, err := ss.c.Init(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		if info.CID == 0 || info.CID == BroadcastCID || seen[info.CID] {
			t.Fatalf("bad or repeated CID %#x", info.CID)
		}
		if info.Protocol != ProtocolVersion || info.Capabilities != Capabilities || info.Version != s.Version {
			t.Fatalf("InitInfo %+v", info)
		}
		seen[info.CID] = true
	}
	// Every allocated channel works.
	for cid := range seen {
		ss.expectPing(cid)
	}
}

func TestInitBadLength(t *testing.T) {
	ss := dial(t, newTestServer(echoHandler))
	ss.send(BroadcastCID, CmdInit, []byte{1, 2, 3, 4, 5, 6, 7})
	ss.expectError(BroadcastCID, ErrInvalidLen)
	cid := ss.initCID()
	ss.send(cid, CmdInit, make([]byte, 9))
	ss.expectError(cid, ErrInvalidLen)
	ss.expectPing(cid)
}

func TestInitResync(t *testing.T) {
	ss := dial(t, newTestServer(echoHandler))
	cid := ss.initCID()
	nonce := []byte("resync!!")
	ss.send(cid, CmdInit, nonce)
	cmd, data := ss.recv(cid)
	if cmd != CmdInit || !bytes.Equal(data[:8], nonce) || binary.BigEndian.Uint32(data[8:12]) != cid {
		t.Fatalf("resync response cmd %#x data %x, want INIT echoing CID %#x", cmd, data, cid)
	}
	ss.expectPing(cid)
}

func TestInitResyncAbortsTransaction(t *testing.T) {
	h := newBlockingHandler()
	ss := dial(t, newTestServer(h))
	cid := ss.initCID()
	ss.send(cid, CmdCBOR, []byte{0x04})
	recvOrFail(t, h.started, "handler start")

	ss.send(cid, CmdInit, []byte("12345678"))
	cmd, data := ss.recv(cid)
	if cmd != CmdInit || binary.BigEndian.Uint32(data[8:12]) != cid {
		t.Fatalf("got cmd %#x data %x, want INIT on the same CID", cmd, data)
	}
	recvOrFail(t, h.cancelled, "handler cancellation")
	// The aborted response is never delivered: the next message is the echo.
	ss.expectPing(cid)
	// And the engine is free again.
	ss.send(cid, CmdCBOR, []byte{0x04})
	recvOrFail(t, h.started, "second handler start")
	h.release <- struct{}{}
	if cmd, data := ss.recv(cid); cmd != CmdCBOR || !bytes.Equal(data, []byte{0x00, 0xA0}) {
		t.Fatalf("got cmd %#x data %x", cmd, data)
	}
	ss.expectPing(cid)
}

func TestPingMaxPayload(t *testing.T) {
	// Split writes exercise io.ReadFull on both sides.
	ss := dialConn(t, newTestServer(echoHandler), func(c net.Conn) net.Conn { return splitConn{c} })
	cid := ss.initCID()
	for _, n := range []int{0, 1, 57, 58, 57 + 59, 57 + 59 + 1, 1000, MaxPayload} {
		payload := pattern(n)
		cmd, data, err := ss.c.Call(ctxT(t), CmdPing, payload)
		if err != nil || cmd != CmdPing || !bytes.Equal(data, payload) {
			t.Fatalf("PING %d bytes: cmd %#x, %d bytes back, err %v", n, cmd, len(data), err)
		}
	}
	if MaxPayload != 7609 {
		t.Fatalf("MaxPayload = %d", MaxPayload)
	}
	if _, _, err := ss.c.Call(ctxT(t), CmdPing, pattern(MaxPayload+1)); err == nil {
		t.Fatal("client sent an oversized message")
	}
	ss.raw(initPacket(cid, CmdPing, MaxPayload+1, nil))
	ss.expectError(cid, ErrInvalidLen)
	// Its continuation packets are spurious and ignored.
	ss.raw(contPacket(cid, 0, nil))
	ss.expectPing(cid)
}

func TestCBORRoundTrip(t *testing.T) {
	var got atomic.Pointer[[]byte]
	s := newTestServer(handlerFunc(func(_ context.Context, msg []byte, _ func(byte)) []byte {
		got.Store(&msg)
		return append([]byte{0}, pattern(3000)...)
	}))
	ss := dial(t, s)
	ss.initCID()
	req := append([]byte{0x01}, pattern(700)...)
	cmd, data, err := ss.c.Call(ctxT(t), CmdCBOR, req)
	if err != nil || cmd != CmdCBOR {
		t.Fatalf("cmd %#x err %v", cmd, err)
	}
	if !bytes.Equal(*got.Load(), req) {
		t.Error("handler did not receive the reassembled request")
	}
	if !bytes.Equal(data, append([]byte{0}, pattern(3000)...)) {
		t.Error("client did not receive the reassembled response")
	}
}

func TestCBOREmptyIsInvalidLen(t *testing.T) {
	ss := dial(t, newTestServer(echoHandler))
	ss.initCID()
	_, _, err := ss.c.Call(ctxT(t), CmdCBOR, nil)
	wantErrorCode(t, err, ErrInvalidLen)
}

func TestKeepaliveWhileHandlerBlocks(t *testing.T) {
	proceed, finish := make(chan struct{}), make(chan struct{})
	s := newTestServer(handlerFunc(func(_ context.Context, _ []byte, keepalive func(byte)) []byte {
		<-proceed
		keepalive(KeepaliveUPNeeded)
		<-finish
		return []byte{0}
	}))
	s.KeepaliveInterval = 5 * time.Millisecond
	ss := dial(t, s)
	ss.initCID()
	statuses := make(chan byte, 1000)
	ss.c.Keepalive = func(st byte) {
		select {
		case statuses <- st:
		default:
		}
	}
	result := make(chan error, 1)
	go func() {
		cmd, data, err := ss.c.Call(ctxT(t), CmdCBOR, []byte{0x02})
		if err == nil && (cmd != CmdCBOR || !bytes.Equal(data, []byte{0})) {
			err = errors.New("unexpected response")
		}
		result <- err
	}()
	if st := recvOrFail(t, statuses, "PROCESSING keepalive"); st != KeepaliveProcessing {
		t.Fatalf("first keepalive status %d, want PROCESSING", st)
	}
	close(proceed)
	for recvOrFail(t, statuses, "UPNEEDED keepalive") != KeepaliveUPNeeded {
	}
	close(finish)
	if err := recvOrFail(t, result, "response"); err != nil {
		t.Fatal(err)
	}
}

func TestKeepaliveCallbackSendsImmediately(t *testing.T) {
	finish := make(chan struct{})
	s := newTestServer(handlerFunc(func(_ context.Context, _ []byte, keepalive func(byte)) []byte {
		keepalive(KeepaliveUPNeeded)
		<-finish
		keepalive(KeepaliveUPNeeded) // after the fact: must not follow the response
		return []byte{0}
	}))
	s.KeepaliveInterval = time.Hour // only the callback can produce a keepalive
	ss := dial(t, s)
	ss.initCID()
	statuses := make(chan byte, 10)
	ss.c.Keepalive = func(st byte) { statuses <- st }
	result := make(chan error, 1)
	go func() { _, _, err := ss.c.Call(ctxT(t), CmdCBOR, []byte{0x02}); result <- err }()
	if st := recvOrFail(t, statuses, "keepalive"); st != KeepaliveUPNeeded {
		t.Fatalf("status %d, want UPNEEDED", st)
	}
	close(finish)
	if err := recvOrFail(t, result, "response"); err != nil {
		t.Fatal(err)
	}
	ss.expectPing(ss.c.CID())
}

func TestCancel(t *testing.T) {
	h := newBlockingHandler()
	ss := dial(t, newTestServer(h))
	ss.initCID()
	type resp struct {
		cmd  byte
		data []byte
		err  error
	}
	result := make(chan resp, 1)
	go func() {
		cmd, data, err := ss.c.Call(ctxT(t), CmdCBOR, []byte{0x02})
		result <- resp{cmd, data, err}
	}()
	recvOrFail(t, h.started, "handler start")
	if err := ss.c.Cancel(); err != nil {
		t.Fatal(err)
	}
	recvOrFail(t, h.cancelled, "handler cancellation")
	r := recvOrFail(t, result, "response")
	if r.err != nil || r.cmd != CmdCBOR || !bytes.Equal(r.data, []byte{0x2D}) {
		t.Fatalf("got %+v, want CBOR response 0x2D", r)
	}
	// CANCEL with nothing pending is ignored (never answered).
	if err := ss.c.Cancel(); err != nil {
		t.Fatal(err)
	}
	ss.expectPing(ss.c.CID())
}

func TestCancelFromOtherChannelIgnored(t *testing.T) {
	h := newBlockingHandler()
	s := newTestServer(h)
	ss := dial(t, s)
	cid1 := ss.initCID()
	cid2 := ss.initCID()
	ss.send(cid1, CmdCBOR, []byte{0x02})
	recvOrFail(t, h.started, "handler start")
	other := dial(t, s)
	otherCID := other.initCID()
	ss.send(cid2, CmdCancel, nil)
	other.send(cid1, CmdCancel, nil) // not its channel
	// Both CANCELs were processed before these busy replies.
	ss.send(cid2, CmdPing, []byte{1})
	ss.expectError(cid2, ErrChannelBusy)
	other.send(otherCID, CmdPing, []byte{1})
	other.expectError(otherCID, ErrChannelBusy)
	h.release <- struct{}{}
	if cmd, data := ss.recv(cid1); cmd != CmdCBOR || !bytes.Equal(data, []byte{0x00, 0xA0}) {
		t.Fatalf("got cmd %#x data %x, want the uncancelled response", cmd, data)
	}
}

func TestChannelBusy(t *testing.T) {
	h := newBlockingHandler()
	s := newTestServer(h)
	ss := dial(t, s)
	cid1 := ss.initCID()
	cid2 := ss.initCID()
	other := dial(t, s)
	other.initCID()

	ss.send(cid1, CmdCBOR, []byte{0x02})
	recvOrFail(t, h.started, "handler start")

	// Same connection, other channel.
	for _, cmd := range []byte{CmdPing, CmdCBOR, CmdMsg, CmdWink, CmdLock} {
		ss.send(cid2, cmd, []byte{1})
		ss.expectError(cid2, ErrChannelBusy)
	}
	ss.send(cid2, CmdInit, []byte("12345678"))
	ss.expectError(cid2, ErrChannelBusy)
	// The busy channel itself may only cancel or resync.
	ss.send(cid1, CmdPing, []byte{1})
	ss.expectError(cid1, ErrChannelBusy)
	// Other connection.
	_, _, err := other.c.Call(ctxT(t), CmdCBOR, []byte{0x04})
	wantErrorCode(t, err, ErrChannelBusy)
	_, _, err = other.c.Call(ctxT(t), CmdPing, []byte("x"))
	wantErrorCode(t, err, ErrChannelBusy)
	// INIT on broadcast still works, from anywhere.
	if _, err := other.c.Init(ctxT(t)); err != nil {
		t.Fatalf("broadcast INIT while busy: %v", err)
	}
	third := dial(t, s)
	third.initCID()

	// The transaction was unaffected.
	h.release <- struct{}{}
	if cmd, data := ss.recv(cid1); cmd != CmdCBOR || !bytes.Equal(data, []byte{0x00, 0xA0}) {
		t.Fatalf("got cmd %#x data %x", cmd, data)
	}
	ss.expectPing(cid2)
	other.expectPing(other.c.CID())
}

func TestBusyDuringAssembly(t *testing.T) {
	s := newTestServer(echoHandler)
	ss := dial(t, s)
	cid1 := ss.initCID()
	cid2 := ss.initCID()
	other := dial(t, s)
	otherCID := other.initCID()

	msg := pattern(100)
	ss.raw(initPacket(cid1, CmdPing, len(msg), msg[:57]))
	ss.send(cid2, CmdPing, []byte{1})
	ss.expectError(cid2, ErrChannelBusy)
	other.send(otherCID, CmdPing, []byte{1})
	other.expectError(otherCID, ErrChannelBusy)
	// Continuations from another channel are spurious, not busy.
	other.raw(contPacket(otherCID, 0, nil))
	if _, err := other.c.Init(ctxT(t)); err != nil {
		t.Fatalf("broadcast INIT during assembly: %v", err)
	}
	ss.raw(contPacket(cid1, 0, msg[57:]))
	if cmd, data := ss.recv(cid1); cmd != CmdPing || !bytes.Equal(data, msg) {
		t.Fatalf("got cmd %#x data %x", cmd, data)
	}
	ss.expectPing(cid2)
	other.expectPing(other.c.CID())
}

func TestInvalidSeq(t *testing.T) {
	ss := dial(t, newTestServer(echoHandler))
	cid := ss.initCID()
	msg := pattern(200)

	ss.raw(initPacket(cid, CmdPing, len(msg), msg))
	ss.raw(contPacket(cid, 1, msg[57:]))
	ss.expectError(cid, ErrInvalidSeq)
	ss.raw(contPacket(cid, 0, msg[57:])) // assembly dropped: spurious now
	ss.expectPing(cid)

	// A new non-INIT message mid-assembly.
	ss.raw(initPacket(cid, CmdPing, len(msg), msg))
	ss.raw(contPacket(cid, 0, msg[57:]))
	ss.raw(initPacket(cid, CmdPing, 1, []byte{1}))
	ss.expectError(cid, ErrInvalidSeq)
	ss.expectPing(cid)

	// INIT mid-assembly restarts the channel.
	ss.raw(initPacket(cid, CmdPing, len(msg), msg))
	ss.send(cid, CmdInit, []byte("restart!"))
	if cmd, data := ss.recv(cid); cmd != CmdInit || string(data[:8]) != "restart!" {
		t.Fatalf("got cmd %#x data %x", cmd, data)
	}
	ss.raw(contPacket(cid, 0, msg[57:]))
	ss.expectPing(cid)

	// CANCEL mid-assembly abandons the message silently.
	ss.raw(initPacket(cid, CmdPing, len(msg), msg))
	ss.send(cid, CmdCancel, nil)
	ss.raw(contPacket(cid, 0, msg[57:]))
	ss.expectPing(cid)
}

func TestSpuriousContinuationIgnored(t *testing.T) {
	ss := dial(t, newTestServer(echoHandler))
	cid := ss.initCID()
	for seq := range byte(3) {
		ss.raw(contPacket(cid, seq, []byte("junk")))
	}
	ss.raw(contPacket(0, 0, nil))
	ss.raw(contPacket(0x12345678, 5, nil))
	ss.expectPing(cid)
}

func TestMessageTimeout(t *testing.T) {
	s := newTestServer(echoHandler)
	s.MessageTimeout = 10 * time.Millisecond
	ss := dial(t, s)
	cid := ss.initCID()
	msg := pattern(150)
	ss.raw(initPacket(cid, CmdPing, len(msg), msg))
	ss.expectError(cid, ErrMsgTimeout)
	ss.raw(contPacket(cid, 0, msg[57:])) // too late: spurious
	ss.expectPing(cid)
	// A timeout also happens after some continuation packets.
	ss.raw(initPacket(cid, CmdPing, len(msg), msg))
	ss.raw(contPacket(cid, 0, msg[57:]))
	ss.expectError(cid, ErrMsgTimeout)
	ss.expectPing(cid)
}

func TestInvalidChannel(t *testing.T) {
	s := newTestServer(echoHandler)
	ss := dial(t, s)
	cid := ss.initCID()
	other := dial(t, s)
	otherCID := other.initCID()

	ss.send(0, CmdPing, []byte{1})
	ss.expectError(0, ErrInvalidChannel)
	ss.send(0, CmdInit, []byte("12345678"))
	ss.expectError(0, ErrInvalidChannel)
	ss.send(BroadcastCID, CmdPing, []byte{1})
	ss.expectError(BroadcastCID, ErrInvalidChannel)
	ss.send(BroadcastCID, CmdCBOR, []byte{4})
	ss.expectError(BroadcastCID, ErrInvalidChannel)
	unallocated := cid ^ 0x5A5A5A5A
	ss.send(unallocated, CmdPing, []byte{1})
	ss.expectError(unallocated, ErrInvalidChannel)
	// A channel of another connection is not ours.
	ss.send(otherCID, CmdPing, []byte{1})
	ss.expectError(otherCID, ErrInvalidChannel)
	ss.send(otherCID, CmdInit, []byte("12345678"))
	ss.expectError(otherCID, ErrInvalidChannel)
	ss.expectPing(cid)
	other.expectPing(otherCID)
}

func TestChannelsReleasedOnClose(t *testing.T) {
	s := newTestServer(echoHandler)
	ss := dial(t, s)
	ss.initCID()
	ss.initCID()
	ss.close()
	s.mu.Lock()
	n := len(s.channels)
	s.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d channels still allocated after close", n)
	}
}

func TestChannelRecycling(t *testing.T) {
	ss := dial(t, newTestServer(echoHandler))
	first := ss.initCID()
	var last uint32
	for range maxChannelsPerConn {
		last = ss.initCID()
	}
	ss.send(first, CmdPing, []byte{1})
	ss.expectError(first, ErrInvalidChannel)
	ss.expectPing(last)
}

func TestLock(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	s := newTestServer(echoHandler)
	s.now = func() time.Time { return time.Unix(0, clock.Load()) }
	ss := dial(t, s)
	cid1 := ss.initCID()
	cid2 := ss.initCID()
	other := dial(t, s)
	otherCID := other.initCID()

	_, _, err := ss.c.Call(ctxT(t), CmdLock, []byte{11})
	wantErrorCode(t, err, ErrInvalidPar)
	_, _, err = ss.c.Call(ctxT(t), CmdLock, nil)
	wantErrorCode(t, err, ErrInvalidLen)
	_, _, err = ss.c.Call(ctxT(t), CmdLock, []byte{1, 2})
	wantErrorCode(t, err, ErrInvalidLen)

	lock := func(cid uint32, secs byte) {
		t.Helper()
		ss.send(cid, CmdLock, []byte{secs})
		if cmd, data := ss.recv(cid); cmd != CmdLock || len(data) != 0 {
			t.Fatalf("LOCK: cmd %#x data %x", cmd, data)
		}
	}
	lock(cid2, 10)
	ss.expectPing(cid2) // the holder works
	ss.send(cid1, CmdPing, []byte{1})
	ss.expectError(cid1, ErrChannelBusy)
	other.send(otherCID, CmdPing, []byte{1})
	other.expectError(otherCID, ErrChannelBusy)
	other.send(otherCID, CmdLock, []byte{0}) // only the holder unlocks
	other.expectError(otherCID, ErrChannelBusy)
	if _, err := other.c.Init(ctxT(t)); err != nil {
		t.Fatalf("broadcast INIT while locked: %v", err)
	}
	lock(cid2, 0)
	ss.expectPing(cid1)
	other.expectPing(otherCID)

	// Expiry.
	lock(cid2, 3)
	ss.send(cid1, CmdPing, []byte{1})
	ss.expectError(cid1, ErrChannelBusy)
	clock.Add(int64(3 * time.Second))
	ss.expectPing(cid1)

	// The holder's connection closing releases the lock.
	lock(cid2, 10)
	other.send(otherCID, CmdPing, []byte{1})
	other.expectError(otherCID, ErrChannelBusy)
	ss.close()
	other.expectPing(otherCID)
}

func TestMsgNotSupported(t *testing.T) {
	ss := dial(t, newTestServer(echoHandler))
	ss.initCID()
	apdu := []byte{0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x40}
	cmd, data, err := ss.c.Call(ctxT(t), CmdMsg, apdu)
	if err != nil || cmd != CmdMsg || !bytes.Equal(data, []byte{0x6D, 0x00}) {
		t.Fatalf("MSG: cmd %#x data %x err %v, want MSG 6D00", cmd, data, err)
	}
}

func TestWink(t *testing.T) {
	s := newTestServer(echoHandler)
	var winks atomic.Int32
	s.Wink = func() { winks.Add(1) }
	ss := dial(t, s)
	ss.initCID()
	cmd, data, err := ss.c.Call(ctxT(t), CmdWink, nil)
	if err != nil || cmd != CmdWink || len(data) != 0 {
		t.Fatalf("WINK: cmd %#x data %x err %v", cmd, data, err)
	}
	if winks.Load() != 1 {
		t.Fatalf("Wink called %d times", winks.Load())
	}
	// Without a callback WINK still answers.
	s2 := dial(t, newTestServer(echoHandler))
	s2.initCID()
	if cmd, _, err := s2.c.Call(ctxT(t), CmdWink, nil); err != nil || cmd != CmdWink {
		t.Fatalf("WINK: cmd %#x err %v", cmd, err)
	}
}

func TestUnknownCommand(t *testing.T) {
	ss := dial(t, newTestServer(echoHandler))
	cid := ss.initCID()
	for _, cmd := range []byte{0x80, 0x85, 0x82, CmdKeepalive, CmdError, 0xC0, 0xFF} {
		_, _, err := ss.c.Call(ctxT(t), cmd, []byte{1})
		wantErrorCode(t, err, ErrInvalidCmd)
	}
	ss.expectPing(cid)
}

func TestConnectionCloseCancelsTransaction(t *testing.T) {
	h := newBlockingHandler()
	s := newTestServer(h)
	ss := dial(t, s)
	cid := ss.initCID()
	ss.send(cid, CmdCBOR, []byte{0x02})
	recvOrFail(t, h.started, "handler start")
	ss.conn.Close()
	recvOrFail(t, h.cancelled, "handler cancellation")
	recvOrFail(t, ss.done, "ServeConn return")
	if ss.err != nil {
		t.Fatalf("ServeConn after peer close: %v", ss.err)
	}
	// The transaction slot and the engine are free for others.
	go func() { h.release <- struct{}{} }()
	other := dial(t, s)
	other.initCID()
	cmd, data, err := other.c.Call(ctxT(t), CmdCBOR, []byte{0x04})
	if err != nil || cmd != CmdCBOR || !bytes.Equal(data, []byte{0x00, 0xA0}) {
		t.Fatalf("cmd %#x data %x err %v", cmd, data, err)
	}
}

func TestServeConnContextCancel(t *testing.T) {
	h := newBlockingHandler()
	s := newTestServer(h)
	srv, cli := net.Pipe()
	defer srv.Close()
	defer cli.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ServeConn(ctx, srv) }()
	c := NewClient(cli)
	if _, err := c.Init(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := writeMessage(cli, c.CID(), CmdCBOR, []byte{0x02}); err != nil {
		t.Fatal(err)
	}
	recvOrFail(t, h.started, "handler start")
	cancel() // the client is not reading: writes of keepalives may be blocked
	if err := recvOrFail(t, done, "ServeConn return"); !errors.Is(err, context.Canceled) {
		t.Fatalf("ServeConn = %v, want context.Canceled", err)
	}
	recvOrFail(t, h.cancelled, "handler cancellation")
}

func TestTruncatedReportIsAnError(t *testing.T) {
	s := newTestServer(echoHandler)
	srv, cli := net.Pipe()
	defer srv.Close()
	done := make(chan error, 1)
	go func() { done <- s.ServeConn(context.Background(), srv) }()
	if _, err := cli.Write(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	cli.Close()
	if err := recvOrFail(t, done, "ServeConn return"); err == nil || errors.Is(err, context.Canceled) {
		t.Fatalf("ServeConn = %v, want a read error", err)
	}
}

func TestHandlerMisbehaviour(t *testing.T) {
	var mode atomic.Int32
	s := newTestServer(handlerFunc(func(_ context.Context, _ []byte, _ func(byte)) []byte {
		switch mode.Load() {
		case 0:
			panic("engine bug")
		case 1:
			return nil
		default:
			return make([]byte, MaxPayload+1)
		}
	}))
	ss := dial(t, s)
	ss.initCID()
	for m := range int32(3) {
		mode.Store(m)
		_, _, err := ss.c.Call(ctxT(t), CmdCBOR, []byte{0x04})
		wantErrorCode(t, err, ErrOther)
	}
}

func TestPayloadNotLogged(t *testing.T) {
	var logs syncBuffer
	secret := "correct horse battery staple"
	s := newTestServer(handlerFunc(func(_ context.Context, msg []byte, _ func(byte)) []byte {
		return append([]byte{0}, msg...)
	}))
	s.Logger = debugLogger(&logs)
	ss := dial(t, s)
	cid := ss.initCID()
	req := append([]byte{0x06}, []byte(secret)...)
	if _, _, err := ss.c.Call(ctxT(t), CmdCBOR, req); err != nil {
		t.Fatal(err)
	}
	ss.raw(initPacket(cid, CmdCBOR, 100, req)) // incomplete, then broken
	ss.raw(contPacket(cid, 3, []byte(secret)))
	ss.expectError(cid, ErrInvalidSeq)
	out := logs.String()
	if out == "" {
		t.Fatal("nothing logged at debug level")
	}
	for _, needle := range []string{secret, "636f7272656374", "horse"} {
		if strings.Contains(out, needle) {
			t.Fatalf("log contains payload %q:\n%s", needle, out)
		}
	}
}

func TestNewServerConfig(t *testing.T) {
	wink := func() {}
	s := NewServer(echoHandler, Config{Version: [3]byte{4, 5, 6}, Wink: wink, KeepaliveInterval: time.Second})
	if s.Version != [3]byte{4, 5, 6} || s.Wink == nil || s.KeepaliveInterval != time.Second || s.MessageTimeout != DefaultMessageTimeout {
		t.Fatalf("NewServer did not apply the Config: %+v", s)
	}
	ss := dial(t, s)
	info, err := ss.c.Init(ctxT(t))
	if err != nil || info.Version != [3]byte{4, 5, 6} {
		t.Fatalf("Init = %+v, %v", info, err)
	}
}
