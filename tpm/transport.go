package tpm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
)

// DefaultDevice is the kernel's resource-managed TPM, used when Open gets "".
const DefaultDevice = "/dev/tpmrm0"

const (
	hdrSize     = 10      // TPM command/response header: tag u16, size u32, code u32
	maxRspSize  = 1 << 16 // far above any TPM's MAX_RESPONSE_SIZE (4096 typical)
	dialTimeout = 5 * time.Second
	// ioTimeout bounds one command on a socket. Hardware TPMs are reached
	// through the kernel, not here; a simulator answers in milliseconds.
	ioTimeout = 60 * time.Second
)

// OpenTransport opens the raw transport named by spec, without the SRK setup
// that Open does. It exists so that callers can wrap the transport (for
// example in a CountingTransport) and pass it to New. The caller closes it.
//
//   - "" or a path such as /dev/tpmrm0: a kernel TPM character device.
//   - "swtpm:SOCKET": swtpm --server type=unixio,path=SOCKET. swtpm serves one
//     data connection at a time, so every command dials anew (as go-tpm's
//     linuxudstpm does); other clients such as tpm2-tools can interleave, and
//     a restarted swtpm is simply reached by the next command.
//   - "tcp:HOST:PORT": swtpm --server type=tcp, raw TPM commands on its data
//     port (not the MS simulator framing). One connection is kept and redialed
//     after any I/O error; dialing per command would pile up TIME_WAIT sockets.
//
// A missing or unusable device wraps ErrNoDevice.
func OpenTransport(spec string) (transport.TPMCloser, error) {
	switch {
	case strings.HasPrefix(spec, "swtpm:"):
		path := strings.TrimPrefix(spec, "swtpm:")
		fi, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("tpm: %s: %w: %w", spec, ErrNoDevice, err)
		}
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("tpm: %s: %w: not a socket", spec, ErrNoDevice)
		}
		return &streamTransport{network: "unix", addr: path}, nil
	case strings.HasPrefix(spec, "tcp:"):
		addr := strings.TrimPrefix(spec, "tcp:")
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("tpm: %s: want tcp:HOST:PORT: %w", spec, err)
		}
		st := &streamTransport{network: "tcp", addr: addr, persistent: true}
		if err := st.dial(); err != nil {
			return nil, err
		}
		return st, nil
	default:
		path := spec
		if path == "" {
			path = DefaultDevice
		}
		t, err := linuxtpm.Open(path)
		if err != nil {
			return nil, fmt.Errorf("tpm: %s: %w: %w", path, ErrNoDevice, err)
		}
		return t, nil
	}
}

// streamTransport sends raw TPM commands over a stream socket and reads one
// complete response (the header's size field says how long it is).
type streamTransport struct {
	network, addr string
	persistent    bool

	mu   sync.Mutex
	conn net.Conn
}

func (s *streamTransport) dial() error {
	c, err := net.DialTimeout(s.network, s.addr, dialTimeout)
	if err != nil {
		return fmt.Errorf("tpm: dial %s %s: %w: %w", s.network, s.addr, ErrNoDevice, err)
	}
	s.conn = c
	return nil
}

// Send implements transport.TPM.
func (s *streamTransport) Send(cmd []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		if err := s.dial(); err != nil {
			return nil, err
		}
	}
	rsp, err := s.roundTrip(cmd)
	if err != nil || !s.persistent {
		// After an error the stream may be out of step; start over next time.
		s.conn.Close()
		s.conn = nil
	}
	if err != nil {
		return nil, fmt.Errorf("tpm: %s %s: %w", s.network, s.addr, err)
	}
	return rsp, nil
}

func (s *streamTransport) roundTrip(cmd []byte) ([]byte, error) {
	if err := s.conn.SetDeadline(time.Now().Add(ioTimeout)); err != nil {
		return nil, err
	}
	if _, err := s.conn.Write(cmd); err != nil {
		return nil, err
	}
	hdr := make([]byte, hdrSize)
	if _, err := io.ReadFull(s.conn, hdr); err != nil {
		return nil, err
	}
	size := binary.BigEndian.Uint32(hdr[2:6])
	if size < hdrSize || size > maxRspSize {
		return nil, fmt.Errorf("bad response size %d", size)
	}
	rsp := make([]byte, size)
	copy(rsp, hdr)
	if _, err := io.ReadFull(s.conn, rsp[hdrSize:]); err != nil {
		return nil, err
	}
	return rsp, nil
}

// Close implements io.Closer.
func (s *streamTransport) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	return err
}

// Retry policy for TPM_RC_RETRY, TPM_RC_YIELDED and TPM_RC_TESTING: the TPM
// did not execute the command, so the same bytes (same session nonces) are
// sent again. About one second in total before giving up.
const (
	maxRetries   = 10
	firstBackoff = 2 * time.Millisecond
	maxBackoff   = 250 * time.Millisecond
)

// retrying resends commands the TPM asked to be retried.
type retrying struct {
	t     transport.TPM
	sleep func(time.Duration) // time.Sleep; replaced in tests
}

func (r *retrying) Send(cmd []byte) ([]byte, error) {
	backoff := firstBackoff
	for attempt := 0; ; attempt++ {
		rsp, err := r.t.Send(cmd)
		if err != nil || len(rsp) < hdrSize || attempt == maxRetries {
			return rsp, err
		}
		switch tpm2.TPMRC(binary.BigEndian.Uint32(rsp[6:10])) {
		case tpm2.TPMRCRetry, tpm2.TPMRCYielded, tpm2.TPMRCTesting:
			r.sleep(backoff)
			backoff = min(2*backoff, maxBackoff)
		default:
			return rsp, nil
		}
	}
}

// CountingTransport wraps a transport.TPM and counts the commands sent
// through it, by command code. Tests and benchmarks use it to measure how
// many TPM round trips an operation costs. A Device retries below its
// caller's transport, so resends after TPM_RC_RETRY (or YIELDED, TESTING)
// are counted too, and separately by Retried. It is safe for concurrent use.
type CountingTransport struct {
	t transport.TPM

	mu      sync.Mutex
	total   int
	retried int
	byCode  map[tpm2.TPMCC]int
}

// NewCountingTransport returns a CountingTransport sending to t.
func NewCountingTransport(t transport.TPM) *CountingTransport {
	return &CountingTransport{t: t, byCode: map[tpm2.TPMCC]int{}}
}

// Send implements transport.TPM.
func (c *CountingTransport) Send(cmd []byte) ([]byte, error) {
	c.mu.Lock()
	c.total++
	if len(cmd) >= hdrSize {
		c.byCode[tpm2.TPMCC(binary.BigEndian.Uint32(cmd[6:10]))]++
	}
	c.mu.Unlock()
	rsp, err := c.t.Send(cmd)
	if err == nil && len(rsp) >= hdrSize {
		switch tpm2.TPMRC(binary.BigEndian.Uint32(rsp[6:10])) {
		case tpm2.TPMRCRetry, tpm2.TPMRCYielded, tpm2.TPMRCTesting:
			c.mu.Lock()
			c.retried++
			c.mu.Unlock()
		}
	}
	return rsp, err
}

// Retried returns how many of the commands counted by Total were answered
// with "retry" (TPM_RC_RETRY, TPM_RC_YIELDED, TPM_RC_TESTING) since the last
// Reset. Total minus Retried is the number of distinct TPM operations.
func (c *CountingTransport) Retried() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.retried
}

// Total returns the number of commands sent since the last Reset.
func (c *CountingTransport) Total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

// Count returns how many commands with code cc were sent since the last Reset.
func (c *CountingTransport) Count(cc tpm2.TPMCC) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byCode[cc]
}

// Reset zeroes the counters.
func (c *CountingTransport) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total, c.retried = 0, 0
	clear(c.byCode)
}

// Close closes the wrapped transport if it is an io.Closer.
func (c *CountingTransport) Close() error {
	if cl, ok := c.t.(io.Closer); ok {
		return cl.Close()
	}
	return nil
}

// isTransportError reports whether err came from talking to the TPM rather
// than from the TPM itself: no response code means nothing is known about the
// TPM's state.
func isTransportError(err error) bool {
	var rc tpm2.TPMRC
	return err != nil && !errors.As(err, &rc)
}
