package ctaphid

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"
)

// testTimeout bounds every wait so a bug fails instead of hanging; no test
// asserts on elapsed time.
const testTimeout = 20 * time.Second

type handlerFunc func(ctx context.Context, msg []byte, keepalive func(byte)) []byte

func (f handlerFunc) ServeCTAP(ctx context.Context, msg []byte, keepalive func(byte)) []byte {
	return f(ctx, msg, keepalive)
}

// echoHandler answers status 0 followed by the request.
var echoHandler = handlerFunc(func(_ context.Context, msg []byte, _ func(byte)) []byte {
	return append([]byte{0}, msg...)
})

// blockingHandler signals started, then waits for release or cancellation.
// Cancellation is answered with CTAP2_ERR_KEEPALIVE_CANCEL, as the engine does.
type blockingHandler struct {
	started   chan []byte
	release   chan struct{}
	cancelled chan struct{}
}

func newBlockingHandler() *blockingHandler {
	return &blockingHandler{
		started:   make(chan []byte, 10),
		release:   make(chan struct{}),
		cancelled: make(chan struct{}, 10),
	}
}

func (h *blockingHandler) ServeCTAP(ctx context.Context, msg []byte, _ func(byte)) []byte {
	h.started <- msg
	select {
	case <-h.release:
		return []byte{0x00, 0xA0}
	case <-ctx.Done():
		h.cancelled <- struct{}{}
		return []byte{StatusKeepaliveCancel}
	}
}

func newTestServer(h Handler) *Server {
	s := NewServer(h, Config{})
	s.Version = [3]byte{1, 2, 3}
	s.MessageTimeout = time.Minute // tests of the timeout lower it
	return s
}

// session is one client connection to a Server over net.Pipe.
type session struct {
	t     *testing.T
	conn  net.Conn // client end, for raw packets
	c     *Client
	done  chan struct{} // closed when ServeConn returned
	err   error         // what ServeConn returned
	close func()
}

func dial(t *testing.T, s *Server) *session {
	t.Helper()
	return dialConn(t, s, func(c net.Conn) net.Conn { return c })
}

func dialConn(t *testing.T, s *Server, wrap func(net.Conn) net.Conn) *session {
	t.Helper()
	srv, cli := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	conn := wrap(cli)
	ss := &session{t: t, conn: conn, c: NewClient(conn), done: make(chan struct{})}
	go func() {
		ss.err = s.ServeConn(ctx, wrap(srv))
		close(ss.done)
	}()
	var once sync.Once
	ss.close = func() {
		once.Do(func() {
			cli.Close()
			cancel()
			select {
			case <-ss.done:
			case <-time.After(testTimeout):
				t.Error("ServeConn did not return")
			}
			srv.Close()
		})
	}
	t.Cleanup(ss.close)
	return ss
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// initCID allocates a channel for ss.c.
func (ss *session) initCID() uint32 {
	ss.t.Helper()
	info, err := ss.c.Init(ctxT(ss.t))
	if err != nil {
		ss.t.Fatalf("Init: %v", err)
	}
	return info.CID
}

// raw writes one report.
func (ss *session) raw(p []byte) {
	ss.t.Helper()
	if len(p) != ReportSize {
		ss.t.Fatalf("raw report of %d bytes", len(p))
	}
	if _, err := ss.conn.Write(p); err != nil {
		ss.t.Fatalf("write report: %v", err)
	}
}

// send writes a whole message, possibly fragmented.
func (ss *session) send(cid uint32, cmd byte, data []byte) {
	ss.t.Helper()
	if err := writeMessage(ss.conn, cid, cmd, data); err != nil {
		ss.t.Fatalf("send: %v", err)
	}
}

// recv returns the next message on cid, skipping keepalives.
func (ss *session) recv(cid uint32) (byte, []byte) {
	ss.t.Helper()
	for {
		cmd, data, err := ss.c.read(ctxT(ss.t), cid)
		if err != nil {
			ss.t.Fatalf("read on CID %#x: %v", cid, err)
		}
		if cmd != CmdKeepalive {
			return cmd, data
		}
	}
}

func (ss *session) expectError(cid uint32, code ErrorCode) {
	ss.t.Helper()
	cmd, data := ss.recv(cid)
	if cmd != CmdError || len(data) != 1 || ErrorCode(data[0]) != code {
		ss.t.Fatalf("CID %#x: got cmd %#x payload %x, want %v", cid, cmd, data, code)
	}
}

// expectPing checks that cid is usable and that nothing else was queued on
// it before: the PING echo must be the next message.
func (ss *session) expectPing(cid uint32) {
	ss.t.Helper()
	ss.send(cid, CmdPing, []byte("still alive"))
	cmd, data := ss.recv(cid)
	if cmd != CmdPing || string(data) != "still alive" {
		ss.t.Fatalf("CID %#x: got cmd %#x payload %q, want the PING echo", cid, cmd, data)
	}
}

func initPacket(cid uint32, cmd byte, bcnt int, data []byte) []byte {
	p := make([]byte, ReportSize)
	binary.BigEndian.PutUint32(p, cid)
	p[4] = cmd
	binary.BigEndian.PutUint16(p[5:], uint16(bcnt))
	copy(p[7:], data)
	return p
}

func contPacket(cid uint32, seq byte, data []byte) []byte {
	p := make([]byte, ReportSize)
	binary.BigEndian.PutUint32(p, cid)
	p[4] = seq
	copy(p[5:], data)
	return p
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

func recvOrFail[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(testTimeout):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

func wantErrorCode(t *testing.T, err error, code ErrorCode) {
	t.Helper()
	if !errors.Is(err, code) {
		t.Fatalf("got error %v, want %v", err, code)
	}
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func debugLogger(w *syncBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// splitConn splits every write into small chunks, as a stream socket may.
type splitConn struct{ net.Conn }

func (c splitConn) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), 13)
		m, err := c.Conn.Write(p[:k])
		n += m
		if err != nil {
			return n, err
		}
		p = p[k:]
	}
	return n, nil
}
