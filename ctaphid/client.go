package ctaphid

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// Client is the host side of CTAPHID over a report stream, for tests,
// benchmarks and tools. It is not a full HID stack: it owns one channel and
// expects to be the only reader of rw.
//
// Init and Call must not be called concurrently with each other; Cancel may
// be called at any time, typically while Call is waiting.
type Client struct {
	// Keepalive, if set, is called with the status byte of every
	// CTAPHID_KEEPALIVE received while Call waits for its response.
	Keepalive func(status byte)

	rw  io.ReadWriter
	wmu sync.Mutex // Cancel may write while Call reads
	cid uint32
}

// InitInfo is the decoded CTAPHID_INIT response.
type InitInfo struct {
	CID          uint32
	Protocol     byte    // CTAPHID protocol version, 2
	Version      [3]byte // device major, minor, build
	Capabilities byte    // Cap* flags
}

// NewClient returns a Client talking over rw (a socket, pipe or HID device).
// If rw has SetReadDeadline, Init and Call honour context cancellation while
// reading; otherwise they only check the context between reports.
func NewClient(rw io.ReadWriter) *Client {
	return &Client{rw: rw, cid: BroadcastCID}
}

// CID returns the channel allocated by Init (BroadcastCID before Init).
func (c *Client) CID() uint32 {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.cid
}

// Init allocates a new channel with CTAPHID_INIT on the broadcast channel and
// makes it the Client's channel.
func (c *Client) Init(ctx context.Context) (InitInfo, error) {
	var nonce [initNonceSize]byte
	_, _ = rand.Read(nonce[:])
	defer c.bind(ctx)()
	if err := c.write(BroadcastCID, CmdInit, nonce[:]); err != nil {
		return InitInfo{}, err
	}
	for {
		cmd, data, err := c.read(ctx, BroadcastCID)
		if err != nil {
			return InitInfo{}, err
		}
		// Skip responses meant for another host sharing the channel.
		if cmd != CmdInit || len(data) < initRespSize || !bytes.Equal(data[:initNonceSize], nonce[:]) {
			continue
		}
		info := InitInfo{
			CID:          binary.BigEndian.Uint32(data[8:12]),
			Protocol:     data[12],
			Version:      [3]byte{data[13], data[14], data[15]},
			Capabilities: data[16],
		}
		c.wmu.Lock()
		c.cid = info.CID
		c.wmu.Unlock()
		return info, nil
	}
}

// Call sends one request on the Client's channel and returns the response
// command and payload. Keepalives are passed to c.Keepalive and skipped. A
// CTAPHID_ERROR response is returned as CmdError, its payload, and an error
// wrapping its ErrorCode. If ctx ends first, the channel is left mid
// transaction; re-Init it before reuse.
func (c *Client) Call(ctx context.Context, cmd byte, data []byte) (respCmd byte, payload []byte, err error) {
	cid := c.CID()
	defer c.bind(ctx)()
	if err := c.write(cid, cmd, data); err != nil {
		return 0, nil, err
	}
	for {
		respCmd, payload, err = c.read(ctx, cid)
		if err != nil {
			return 0, nil, err
		}
		switch respCmd {
		case CmdKeepalive:
			if c.Keepalive != nil && len(payload) > 0 {
				c.Keepalive(payload[0])
			}
			continue
		case CmdError:
			if len(payload) == 0 {
				return respCmd, payload, errors.New("ctaphid: empty CTAPHID_ERROR response")
			}
			return respCmd, payload, fmt.Errorf("ctaphid: command 0x%02x: device answered %w", cmd, ErrorCode(payload[0]))
		}
		return respCmd, payload, nil
	}
}

// Cancel sends CTAPHID_CANCEL on the Client's channel. It is never answered;
// the pending Call receives the Handler's response (normally 0x2D).
func (c *Client) Cancel() error {
	return c.write(c.CID(), CmdCancel, nil)
}

func (c *Client) write(cid uint32, cmd byte, data []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := writeMessage(c.rw, cid, cmd, data); err != nil {
		return fmt.Errorf("ctaphid: send command 0x%02x: %w", cmd, err)
	}
	return nil
}

// read returns the next complete message on cid, ignoring other channels.
func (c *Client) read(ctx context.Context, cid uint32) (cmd byte, data []byte, err error) {
	var p packet
	readPacket := func() error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, err := io.ReadFull(c.rw, p[:]); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("ctaphid: read report: %w", err)
		}
		return nil
	}
	for {
		if err := readPacket(); err != nil {
			return 0, nil, err
		}
		if p.cid() == cid && p.isInit() {
			break
		}
	}
	cmd, need := p[4], p.bcnt()
	if need > MaxPayload {
		return 0, nil, fmt.Errorf("ctaphid: response declares %d bytes", need)
	}
	data = make([]byte, 0, need)
	data = append(data, p[7:7+min(need, initDataSize)]...)
	for seq := byte(0); len(data) < need; {
		if err := readPacket(); err != nil {
			return 0, nil, err
		}
		if p.cid() != cid {
			continue
		}
		if p.isInit() || p[4] != seq {
			return 0, nil, fmt.Errorf("ctaphid: response for command 0x%02x: bad continuation packet 0x%02x, want sequence %d", cmd, p[4], seq)
		}
		seq++
		data = append(data, p[5:5+min(need-len(data), contDataSize)]...)
	}
	return cmd, data, nil
}

// bind makes a blocked read return when ctx is done, if rw supports read
// deadlines. The returned function undoes it.
func (c *Client) bind(ctx context.Context) func() {
	d, ok := c.rw.(interface{ SetReadDeadline(time.Time) error })
	if !ok || ctx.Done() == nil {
		return func() {}
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(fired)
		_ = d.SetReadDeadline(time.Unix(1, 0))
	})
	return func() {
		if !stop() {
			<-fired
		}
		_ = d.SetReadDeadline(time.Time{})
	}
}
