package ctaphid

import (
	"bytes"
	"context"
	"encoding/binary"
	"runtime"
	"sync"
	"testing"
	"time"
)

// fuzzConn feeds fixed input reports and records every Write.
type fuzzConn struct {
	in     *bytes.Reader
	mu     sync.Mutex
	writes [][]byte
}

func (c *fuzzConn) Read(p []byte) (int, error) { return c.in.Read(p) }

func (c *fuzzConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes = append(c.writes, bytes.Clone(p))
	return len(p), nil
}

// FuzzReports feeds arbitrary report sequences (the input cut into 64-byte
// reports) to a Server whose channel IDs are allocated as 1, 2, 3... so the
// corpus can address them. It checks that nothing panics and that the output
// is a well-formed sequence of 64-byte reports addressed to CIDs the input used.
func FuzzReports(f *testing.F) {
	f.Add([]byte{}) // the seed corpus lives in testdata/fuzz/FuzzReports
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 300*ReportSize {
			return
		}
		if rem := len(data) % ReportSize; rem != 0 {
			data = append(data, make([]byte, ReportSize-rem)...)
		}
		known := map[uint32]bool{}
		for i := 0; i < len(data); i += ReportSize {
			known[binary.BigEndian.Uint32(data[i:])] = true
		}

		s := NewServer(handlerFunc(func(ctx context.Context, msg []byte, keepalive func(byte)) []byte {
			keepalive(KeepaliveUPNeeded)
			if msg[0] == 0xFF { // wait for cancellation, as a UP prompt would
				<-ctx.Done()
				return []byte{StatusKeepaliveCancel}
			}
			return append([]byte{0}, msg[:min(len(msg), 100)]...)
		}), Config{})
		s.KeepaliveInterval = time.Millisecond
		s.MessageTimeout = time.Millisecond
		var next uint32
		s.newCID = func() uint32 { next++; return next }
		s.Wink = func() {}
		conn := &fuzzConn{in: bytes.NewReader(data)}
		errc := make(chan error, 1)
		go func() { errc <- s.ServeConn(context.Background(), conn) }()
		select {
		case err := <-errc:
			if err != nil {
				t.Fatalf("ServeConn: %v", err)
			}
		case <-time.After(testTimeout):
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("ServeConn hung:\n%s", buf[:n])
		}

		conn.mu.Lock()
		defer conn.mu.Unlock()
		checkOutput(t, conn.writes, known)
	})
}

// checkOutput verifies that writes are whole reports forming complete
// messages on known CIDs, zero padded.
func checkOutput(t *testing.T, writes [][]byte, known map[uint32]bool) {
	t.Helper()
	var (
		cur  uint32 // CID of the message being written
		left int    // payload bytes still expected in continuation packets
		seq  byte
	)
	for i, w := range writes {
		if len(w) != ReportSize {
			t.Fatalf("write %d is %d bytes", i, len(w))
		}
		p := (*packet)(w)
		cid := p.cid()
		if left > 0 {
			if p.isInit() || cid != cur || p[4] != seq {
				t.Fatalf("write %d: want continuation %d on CID %#x, got % x", i, seq, cur, w[:8])
			}
			n := min(left, contDataSize)
			if !allZero(w[5+n:]) {
				t.Fatalf("write %d: continuation not zero padded", i)
			}
			left -= n
			seq++
			continue
		}
		if !p.isInit() {
			t.Fatalf("write %d: continuation packet outside a message: % x", i, w[:8])
		}
		if !known[cid] {
			t.Fatalf("write %d: unknown CID %#x", i, cid)
		}
		cmd, n := p[4], p.bcnt()
		switch cmd {
		case CmdPing, CmdMsg, CmdLock, CmdWink, CmdCBOR:
		case CmdInit:
			if n != initRespSize {
				t.Fatalf("write %d: INIT response of %d bytes", i, n)
			}
		case CmdKeepalive, CmdError:
			if n != 1 {
				t.Fatalf("write %d: cmd %#x of %d bytes", i, cmd, n)
			}
		default:
			t.Fatalf("write %d: unexpected response command %#x", i, cmd)
		}
		if n > MaxPayload {
			t.Fatalf("write %d: length %d", i, n)
		}
		if !allZero(w[7+min(n, initDataSize):]) {
			t.Fatalf("write %d: init packet not zero padded", i)
		}
		cur, left, seq = cid, max(0, n-initDataSize), 0
	}
	if left > 0 {
		t.Fatalf("output ends mid-message on CID %#x", cur)
	}
}

func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}
