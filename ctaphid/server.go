package ctaphid

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Handler serves one CTAP2 message (command byte ‖ CBOR) and returns status
// byte ‖ CBOR.
//
// ctx is cancelled on CTAPHID_CANCEL, channel resync, client disconnect or
// server shutdown; on CTAPHID_CANCEL the Handler should return
// CTAP2_ERR_KEEPALIVE_CANCEL (0x2D), which is delivered as a normal response.
// keepalive(status) reports what the handler is waiting for
// (KeepaliveProcessing or KeepaliveUPNeeded); it never blocks and may be
// called from any goroutine, also after ServeCTAP returned (it is then a
// no-op). The Server never calls ServeCTAP concurrently.
type Handler interface {
	ServeCTAP(ctx context.Context, msg []byte, keepalive func(status byte)) []byte
}

// Defaults for the zero Server fields.
const (
	DefaultKeepaliveInterval = 100 * time.Millisecond
	DefaultMessageTimeout    = 500 * time.Millisecond
)

const (
	// maxChannelsPerConn bounds the channels one connection may hold; the
	// oldest idle one is recycled beyond it, as real devices do, so a client
	// looping on CTAPHID_INIT cannot exhaust memory.
	maxChannelsPerConn = 128
	// maxQueuedBytes bounds the responses queued for a peer that does not
	// read; beyond it the connection is dropped rather than stalling the
	// server.
	maxQueuedBytes = 256 << 10
)

var (
	errSlowPeer = errors.New("ctaphid: peer is not reading its responses")
	errConnDone = errors.New("ctaphid: connection closed")
)

// Server serves CTAPHID over report streams. Create it with NewServer, or
// as a struct literal with at least Handler set; the exported fields must not
// be changed once ServeConn has been called.
//
// All connections served by one Server share one channel space, one lock and
// one transaction slot, like processes sharing one HID device: while a message
// is being assembled, a CTAPHID_CBOR transaction is running or the device is
// locked, init packets from other channels are answered ERR_CHANNEL_BUSY
// (CTAPHID_INIT on the broadcast channel always works). A channel belongs to
// the connection that allocated it; other connections get
// ERR_INVALID_CHANNEL on it.
type Server struct {
	// Handler serves CTAPHID_CBOR messages.
	Handler Handler
	// Version is the device version (major, minor, build) reported by CTAPHID_INIT.
	Version [3]byte
	// Wink, if set, is called for CTAPHID_WINK before it is answered. It must
	// return promptly: it runs on the connection's read loop.
	Wink func()
	// Logger receives protocol diagnostics; nil discards them. Message
	// payloads are never logged, only commands, channels and lengths.
	Logger *slog.Logger
	// KeepaliveInterval is the period of CTAPHID_KEEPALIVE while a CBOR
	// request is in progress (DefaultKeepaliveInterval if zero).
	KeepaliveInterval time.Duration
	// MessageTimeout bounds the gap between the packets of one message;
	// ERR_MSG_TIMEOUT is sent when it expires (DefaultMessageTimeout if zero).
	MessageTimeout time.Duration

	once   sync.Once
	log    *slog.Logger
	engine chan struct{} // serialises Handler calls, even past aborted transactions
	now    func() time.Time
	newCID func() uint32 // CID candidates; tests make them predictable
	connID atomic.Uint64

	mu       sync.Mutex
	channels map[uint32]*conn // allocated CID -> owning connection
	asm      *assembly        // the message being reassembled, if any
	txn      *txn             // the CBOR transaction in progress, if any
	lock     struct {
		cid   uint32
		conn  *conn // nil when unlocked
		until time.Time
	}
}

// Config holds the optional settings of NewServer; see the Server fields of
// the same names. The zero Config is valid.
type Config struct {
	Version           [3]byte
	Wink              func()
	Logger            *slog.Logger
	KeepaliveInterval time.Duration
	MessageTimeout    time.Duration
}

// NewServer returns a Server for h configured by cfg, with defaults for zero
// durations. Callers may still adjust the exported fields before the first
// ServeConn.
func NewServer(h Handler, cfg Config) *Server {
	s := &Server{
		Handler:           h,
		Version:           cfg.Version,
		Wink:              cfg.Wink,
		Logger:            cfg.Logger,
		KeepaliveInterval: cfg.KeepaliveInterval,
		MessageTimeout:    cfg.MessageTimeout,
	}
	if s.KeepaliveInterval <= 0 {
		s.KeepaliveInterval = DefaultKeepaliveInterval
	}
	if s.MessageTimeout <= 0 {
		s.MessageTimeout = DefaultMessageTimeout
	}
	return s
}

func (s *Server) init() {
	s.once.Do(func() {
		if s.KeepaliveInterval <= 0 {
			s.KeepaliveInterval = DefaultKeepaliveInterval
		}
		if s.MessageTimeout <= 0 {
			s.MessageTimeout = DefaultMessageTimeout
		}
		s.log = s.Logger
		if s.log == nil {
			s.log = slog.New(slog.DiscardHandler)
		}
		if s.now == nil {
			s.now = time.Now
		}
		if s.newCID == nil {
			s.newCID = rand.Uint32
		}
		s.engine = make(chan struct{}, 1)
		s.channels = make(map[uint32]*conn)
	})
}

// conn is one served report stream.
type conn struct {
	s      *Server
	rw     io.ReadWriter
	id     uint64
	ctx    context.Context
	cancel context.CancelCauseFunc
	cids   []uint32 // channels owned, oldest first; guarded by s.mu

	qmu    sync.Mutex
	q      []outMsg
	qbytes int
	closed bool          // no more sends accepted
	wake   chan struct{} // something was queued
	flush  chan struct{} // closed: write what is queued, then stop
}

type outMsg struct {
	cid  uint32
	cmd  byte
	data []byte
}

// assembly is a message whose continuation packets are still expected.
type assembly struct {
	conn  *conn
	cid   uint32
	cmd   byte
	need  int
	buf   []byte
	seq   byte
	gen   uint64 // bumped per packet so a stale timer does nothing
	timer *time.Timer
}

// txn is the CTAPHID_CBOR transaction in progress. It is current while
// s.txn == t; finishing or aborting it clears s.txn.
type txn struct {
	conn   *conn
	cid    uint32
	ctx    context.Context
	cancel context.CancelFunc
	status atomic.Uint32 // last keepalive status
	stop   chan struct{}
}

// ServeConn serves one connection, a stream of 64-byte reports, until ctx is
// done, the stream ends, or an error occurs. It returns nil when the peer
// closes the stream at a report boundary (responses already due are still
// written) and context.Cause(ctx) when ctx is done.
//
// Several connections may be served concurrently by one Server (see Server).
// Responses go to the connection that sent the request. When ServeConn
// returns, the connection's pending transaction has been cancelled, its lock
// and channels released, and the Server no longer writes to conn.
//
// To unblock pending I/O on return, ServeConn sets a past deadline on conn if
// it has a SetDeadline method, or else closes it if it is an io.Closer; the
// caller still owns conn and should close it. A conn with neither must not
// block in Write forever.
func (s *Server) ServeConn(ctx context.Context, rw io.ReadWriter) error {
	s.init()
	cctx, cancel := context.WithCancelCause(ctx)
	c := &conn{
		s:      s,
		rw:     rw,
		id:     s.connID.Add(1),
		ctx:    cctx,
		cancel: cancel,
		wake:   make(chan struct{}, 1),
		flush:  make(chan struct{}),
	}
	s.log.Debug("ctaphid: connection opened", "conn", c.id)
	context.AfterFunc(cctx, func() { interrupt(rw) })

	writerDone := make(chan struct{})
	go c.writeLoop(writerDone)

	reports := make(chan *packet)
	readErr := make(chan error, 1)
	go func() {
		for {
			p := new(packet)
			// A stream socket may split a report: always read exactly one.
			if _, err := io.ReadFull(rw, p[:]); err != nil {
				readErr <- err
				return
			}
			select {
			case reports <- p:
			case <-cctx.Done():
				return
			}
		}
	}()

	var err error
loop:
	for {
		select {
		case <-cctx.Done():
			err = context.Cause(cctx)
			break loop
		case p := <-reports:
			s.handleReport(c, p)
		case rerr := <-readErr:
			if cctx.Err() != nil { // our own interrupt, or a write failure
				err = context.Cause(cctx)
			} else if !errors.Is(rerr, io.EOF) {
				err = fmt.Errorf("ctaphid: read report: %w", rerr)
			}
			break loop
		}
	}
	s.release(c)
	if err == nil {
		// The peer finished sending; still deliver what it was answered.
		close(c.flush)
	} else {
		cancel(err)
	}
	<-writerDone
	cancel(errConnDone)
	s.log.Debug("ctaphid: connection closed", "conn", c.id, "err", err)
	return err
}

// interrupt unblocks a Read or Write in progress on rw.
func interrupt(rw io.ReadWriter) {
	if d, ok := rw.(interface{ SetDeadline(time.Time) error }); ok {
		if d.SetDeadline(time.Unix(1, 0)) == nil {
			return
		}
	}
	if cl, ok := rw.(io.Closer); ok {
		_ = cl.Close()
	}
}

// release forgets everything c owns and stops further sends to it.
func (s *Server) release(c *conn) {
	c.qmu.Lock()
	c.closed = true
	c.qmu.Unlock()

	s.mu.Lock()
	defer s.mu.Unlock()
	for _, cid := range c.cids {
		delete(s.channels, cid)
	}
	c.cids = nil
	if t := s.txn; t != nil && t.conn == c {
		s.abortTxnLocked(t)
	}
	if a := s.asm; a != nil && a.conn == c {
		s.dropAsmLocked()
	}
	if s.lock.conn == c {
		s.lock.conn = nil
	}
}

// send queues one message for c without blocking; it is safe under s.mu.
func (c *conn) send(cid uint32, cmd byte, data []byte) {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	if c.closed {
		return
	}
	// Coalesce keepalives a slow reader has not picked up yet.
	if cmd == CmdKeepalive && len(c.q) > 0 {
		if last := &c.q[len(c.q)-1]; last.cmd == CmdKeepalive && last.cid == cid {
			last.data = data
			return
		}
	}
	if c.qbytes+len(data) > maxQueuedBytes {
		c.closed = true
		c.q = nil
		c.cancel(errSlowPeer)
		return
	}
	c.q = append(c.q, outMsg{cid, cmd, data})
	c.qbytes += len(data) + ReportSize
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *conn) sendError(cid uint32, code ErrorCode) {
	c.s.log.Debug("ctaphid: error response", "conn", c.id, "cid", cid, "code", byte(code))
	c.send(cid, CmdError, []byte{byte(code)})
}

// writeLoop is the only writer of c.rw, so reports never interleave.
func (c *conn) writeLoop(done chan<- struct{}) {
	defer close(done)
	for {
		flushing := false
		select {
		case <-c.wake:
		case <-c.flush:
			flushing = true // nothing can be queued any more
		case <-c.ctx.Done():
			return
		}
		c.qmu.Lock()
		batch := c.q
		c.q, c.qbytes = nil, 0
		c.qmu.Unlock()
		for _, m := range batch {
			if c.ctx.Err() != nil {
				return
			}
			if err := writeMessage(c.rw, m.cid, m.cmd, m.data); err != nil {
				c.cancel(fmt.Errorf("ctaphid: write report: %w", err))
				return
			}
		}
		if flushing {
			return
		}
	}
}

// handleReport processes one report from c.
func (s *Server) handleReport(c *conn, p *packet) {
	s.mu.Lock()
	after := s.handleLocked(c, p)
	s.mu.Unlock()
	if after != nil {
		after()
	}
}

// handleLocked processes p and returns work to do after unlocking s.mu.
func (s *Server) handleLocked(c *conn, p *packet) func() {
	cid := p.cid()
	if !p.isInit() {
		return s.continuationLocked(c, cid, p)
	}
	cmd, bcnt := p[4], p.bcnt()
	if cmd == CmdCancel {
		s.cancelLocked(c, cid)
		return nil // CTAPHID_CANCEL is never answered
	}
	if !s.validChannelLocked(c, cid, cmd) {
		s.log.Debug("ctaphid: invalid channel", "conn", c.id, "cid", cid, "cmd", cmd)
		c.sendError(cid, ErrInvalidChannel)
		return nil
	}
	if cmd == CmdInit {
		s.initLocked(c, cid, bcnt, p[7:])
		return nil
	}
	switch cmd {
	case CmdPing, CmdMsg, CmdLock, CmdWink, CmdCBOR:
	default:
		s.log.Debug("ctaphid: unknown command", "conn", c.id, "cid", cid, "cmd", cmd)
		c.sendError(cid, ErrInvalidCmd)
		return nil
	}
	if a := s.asm; a != nil {
		if a.cid == cid {
			// A new message before the previous one was complete.
			s.dropAsmLocked()
			c.sendError(cid, ErrInvalidSeq)
		} else {
			c.sendError(cid, ErrChannelBusy)
		}
		return nil
	}
	// The busy channel itself may only CANCEL or INIT: its response is pending.
	if s.txn != nil || s.lockedAgainstLocked(c, cid) {
		c.sendError(cid, ErrChannelBusy)
		return nil
	}
	if bcnt > MaxPayload {
		s.log.Debug("ctaphid: declared length too large", "conn", c.id, "cid", cid, "cmd", cmd, "len", bcnt)
		c.sendError(cid, ErrInvalidLen)
		return nil
	}
	if bcnt <= initDataSize {
		return s.dispatchLocked(c, cid, cmd, append([]byte(nil), p[7:7+bcnt]...))
	}
	a := &assembly{conn: c, cid: cid, cmd: cmd, need: bcnt, buf: make([]byte, 0, bcnt)}
	a.buf = append(a.buf, p[7:]...)
	s.asm = a
	s.armTimerLocked(a)
	return nil
}

// validChannelLocked applies the channel rules: CID 0 is reserved, broadcast
// is for INIT only, any other CID must be allocated to this connection.
func (s *Server) validChannelLocked(c *conn, cid uint32, cmd byte) bool {
	switch cid {
	case 0:
		return false
	case BroadcastCID:
		return cmd == CmdInit
	default:
		return s.channels[cid] == c
	}
}

// lockedAgainstLocked reports whether another channel holds CTAPHID_LOCK.
func (s *Server) lockedAgainstLocked(c *conn, cid uint32) bool {
	if s.lock.conn == nil {
		return false
	}
	if !s.now().Before(s.lock.until) {
		s.lock.conn = nil
		return false
	}
	return s.lock.conn != c || s.lock.cid != cid
}

func (s *Server) continuationLocked(c *conn, cid uint32, p *packet) func() {
	a := s.asm
	if a == nil || a.conn != c || a.cid != cid {
		s.log.Debug("ctaphid: spurious continuation packet ignored", "conn", c.id, "cid", cid)
		return nil
	}
	if seq := p[4]; seq != a.seq {
		s.log.Debug("ctaphid: bad sequence number", "conn", c.id, "cid", cid, "seq", seq, "want", a.seq)
		s.dropAsmLocked()
		c.sendError(cid, ErrInvalidSeq)
		return nil
	}
	a.seq++
	n := min(contDataSize, a.need-len(a.buf))
	a.buf = append(a.buf, p[5:5+n]...)
	if len(a.buf) < a.need {
		s.armTimerLocked(a)
		return nil
	}
	s.dropAsmLocked()
	return s.dispatchLocked(c, cid, a.cmd, a.buf)
}

// armTimerLocked (re)starts the inter-packet timeout of a.
func (s *Server) armTimerLocked(a *assembly) {
	if a.timer != nil {
		a.timer.Stop()
	}
	a.gen++
	gen := a.gen
	a.timer = time.AfterFunc(s.MessageTimeout, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.asm != a || a.gen != gen {
			return
		}
		s.log.Debug("ctaphid: message timeout", "conn", a.conn.id, "cid", a.cid, "cmd", a.cmd, "have", len(a.buf), "len", a.need)
		s.asm = nil
		a.conn.sendError(a.cid, ErrMsgTimeout)
	})
}

func (s *Server) dropAsmLocked() {
	if s.asm.timer != nil {
		s.asm.timer.Stop()
	}
	s.asm = nil
}

func (s *Server) cancelLocked(c *conn, cid uint32) {
	if t := s.txn; t != nil && t.conn == c && t.cid == cid {
		s.log.Debug("ctaphid: cancel", "conn", c.id, "cid", cid)
		t.cancel()
		return
	}
	// A host cancelling mid-message has abandoned it.
	if a := s.asm; a != nil && a.conn == c && a.cid == cid {
		s.dropAsmLocked()
	}
}

func (s *Server) initLocked(c *conn, cid uint32, bcnt int, data []byte) {
	if bcnt != initNonceSize {
		s.log.Debug("ctaphid: INIT with bad length", "conn", c.id, "cid", cid, "len", bcnt)
		c.sendError(cid, ErrInvalidLen)
		return
	}
	resp := make([]byte, initRespSize)
	copy(resp, data[:initNonceSize])
	resp[12] = ProtocolVersion
	copy(resp[13:16], s.Version[:])
	resp[16] = Capabilities
	if cid == BroadcastCID {
		newCID := s.allocLocked(c)
		binary.BigEndian.PutUint32(resp[8:12], newCID)
		s.log.Debug("ctaphid: channel allocated", "conn", c.id, "cid", newCID)
		c.send(BroadcastCID, CmdInit, resp)
		return
	}
	if a := s.asm; (a != nil && a.cid != cid) ||
		(s.txn != nil && s.txn.cid != cid) ||
		s.lockedAgainstLocked(c, cid) {
		c.sendError(cid, ErrChannelBusy)
		return
	}
	// Resynchronise: abandon whatever the channel was doing.
	if t := s.txn; t != nil && t.cid == cid {
		s.abortTxnLocked(t)
	}
	if a := s.asm; a != nil && a.cid == cid {
		s.dropAsmLocked()
	}
	binary.BigEndian.PutUint32(resp[8:12], cid)
	c.send(cid, CmdInit, resp)
}

// allocLocked allocates a fresh CID to c, recycling c's oldest idle channel
// when c holds too many.
func (s *Server) allocLocked(c *conn) uint32 {
	if len(c.cids) >= maxChannelsPerConn {
		for i, old := range c.cids {
			if (s.txn != nil && s.txn.cid == old) || (s.asm != nil && s.asm.cid == old) ||
				(s.lock.conn != nil && s.lock.cid == old) {
				continue
			}
			delete(s.channels, old)
			c.cids = append(c.cids[:i], c.cids[i+1:]...)
			break
		}
	}
	for {
		cid := s.newCID()
		if cid == 0 || cid == BroadcastCID {
			continue
		}
		if _, used := s.channels[cid]; used {
			continue
		}
		s.channels[cid] = c
		c.cids = append(c.cids, cid)
		return cid
	}
}

// dispatchLocked acts on a complete message.
func (s *Server) dispatchLocked(c *conn, cid uint32, cmd byte, data []byte) func() {
	s.log.Debug("ctaphid: request", "conn", c.id, "cid", cid, "cmd", cmd, "len", len(data))
	switch cmd {
	case CmdPing:
		c.send(cid, CmdPing, data)
	case CmdMsg:
		c.send(cid, CmdMsg, swInsNotSupported)
	case CmdLock:
		s.lockLocked(c, cid, data)
	case CmdWink:
		return func() {
			if s.Wink != nil {
				s.Wink()
			}
			c.send(cid, CmdWink, nil)
		}
	case CmdCBOR:
		if len(data) == 0 {
			c.sendError(cid, ErrInvalidLen)
			return nil
		}
		s.startTxnLocked(c, cid, data)
	}
	return nil
}

func (s *Server) lockLocked(c *conn, cid uint32, data []byte) {
	if len(data) != 1 {
		c.sendError(cid, ErrInvalidLen)
		return
	}
	secs := data[0]
	if secs > 10 {
		c.sendError(cid, ErrInvalidPar)
		return
	}
	if secs == 0 {
		s.lock.conn = nil // the caller holds the lock, or nobody does
	} else {
		s.lock.conn, s.lock.cid = c, cid
		s.lock.until = s.now().Add(time.Duration(secs) * time.Second)
	}
	c.send(cid, CmdLock, nil)
}

func (s *Server) startTxnLocked(c *conn, cid uint32, msg []byte) {
	ctx, cancel := context.WithCancel(c.ctx)
	t := &txn{conn: c, cid: cid, ctx: ctx, cancel: cancel, stop: make(chan struct{})}
	t.status.Store(uint32(KeepaliveProcessing))
	s.txn = t
	go s.runTxn(t, msg)
}

// abortTxnLocked abandons t: its response will not be sent. The Handler may
// still be running; s.engine keeps the next one from starting before it ends.
func (s *Server) abortTxnLocked(t *txn) {
	s.log.Debug("ctaphid: transaction aborted", "conn", t.conn.id, "cid", t.cid)
	s.txn = nil
	t.cancel()
}

func (s *Server) runTxn(t *txn, msg []byte) {
	defer t.cancel()
	go s.keepaliveLoop(t)
	var resp []byte
	select {
	case s.engine <- struct{}{}:
		resp = s.callHandler(t, msg)
		<-s.engine
	case <-t.ctx.Done():
		// Cancelled while an aborted request still occupied the engine.
		resp = []byte{StatusKeepaliveCancel}
	}
	close(t.stop)

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.txn != t {
		return // aborted: the host no longer expects this response
	}
	s.txn = nil
	if len(resp) == 0 || len(resp) > MaxPayload {
		s.log.Warn("ctaphid: handler returned a response of invalid length", "cid", t.cid, "len", len(resp))
		t.conn.sendError(t.cid, ErrOther)
		return
	}
	t.conn.send(t.cid, CmdCBOR, resp)
}

func (s *Server) callHandler(t *txn, msg []byte) (resp []byte) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("ctaphid: handler panicked", "cid", t.cid, "panic", r)
			resp = nil
		}
	}()
	keepalive := func(status byte) {
		t.status.Store(uint32(status))
		s.sendKeepalive(t) // at once, so the host learns of UP promptly
	}
	return s.Handler.ServeCTAP(t.ctx, msg, keepalive)
}

func (s *Server) keepaliveLoop(t *txn) {
	tick := time.NewTicker(s.KeepaliveInterval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			s.sendKeepalive(t)
		case <-t.stop:
			return
		}
	}
}

// sendKeepalive queues a keepalive if t is still the current transaction, so
// none follows its response.
func (s *Server) sendKeepalive(t *txn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.txn == t {
		t.conn.send(t.cid, CmdKeepalive, []byte{byte(t.status.Load())})
	}
}
