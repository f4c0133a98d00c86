package ctaphid

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Report and packet geometry (CTAP 2.1 §11.2.4).
const (
	// ReportSize is the size of every HID report, in and out.
	ReportSize = 64
	// initDataSize is the payload carried by an init packet: CID(4) CMD(1) BCNT(2).
	initDataSize = ReportSize - 7
	// contDataSize is the payload carried by a continuation packet: CID(4) SEQ(1).
	contDataSize = ReportSize - 5
	// maxSeq is the number of continuation packets a message may use (SEQ 0..127).
	maxSeq = 128
	// MaxPayload is the largest message payload: 57 + 128*59 bytes.
	MaxPayload = initDataSize + maxSeq*contDataSize
)

// BroadcastCID is the channel used to allocate channels with CTAPHID_INIT.
// CID 0 is reserved and never valid.
const BroadcastCID uint32 = 0xFFFFFFFF

// CTAPHID commands as they appear on the wire (bit 7, the init-packet marker, set).
const (
	CmdPing      byte = 0x81
	CmdMsg       byte = 0x83
	CmdLock      byte = 0x84
	CmdInit      byte = 0x86
	CmdWink      byte = 0x88
	CmdCBOR      byte = 0x90
	CmdCancel    byte = 0x91
	CmdKeepalive byte = 0xBB
	CmdError     byte = 0xBF
)

// CTAPHID_KEEPALIVE status bytes.
const (
	KeepaliveProcessing byte = 1 // the authenticator is still processing
	KeepaliveUPNeeded   byte = 2 // the authenticator is waiting for user presence
)

// StatusKeepaliveCancel is CTAP2_ERR_KEEPALIVE_CANCEL. The Server answers it
// itself for a request cancelled before the Handler was ever called.
const StatusKeepaliveCancel byte = 0x2D

// CTAPHID_INIT response constants.
const (
	// ProtocolVersion is the CTAPHID protocol version reported by CTAPHID_INIT.
	ProtocolVersion byte = 2

	CapWink byte = 0x01 // CAPABILITY_WINK: CTAPHID_WINK is implemented
	CapCBOR byte = 0x04 // CAPABILITY_CBOR: CTAPHID_CBOR is implemented
	CapNMSG byte = 0x08 // CAPABILITY_NMSG: CTAPHID_MSG (U2F) is NOT implemented

	// Capabilities is what the Server advertises.
	Capabilities = CapWink | CapCBOR | CapNMSG

	initNonceSize = 8
	initRespSize  = 17
)

// swInsNotSupported is the ISO 7816 status word SW_INS_NOT_SUPPORTED, the
// whole answer to any U2F APDU.
var swInsNotSupported = []byte{0x6D, 0x00}

// ErrorCode is the one-byte payload of a CTAPHID_ERROR response. Client
// returns it (wrapped) as an error, so errors.Is(err, ErrChannelBusy) works.
type ErrorCode byte

// CTAPHID_ERROR codes (CTAP 2.1 §11.2.9.1.6).
const (
	ErrInvalidCmd     ErrorCode = 0x01
	ErrInvalidPar     ErrorCode = 0x02
	ErrInvalidLen     ErrorCode = 0x03
	ErrInvalidSeq     ErrorCode = 0x04
	ErrMsgTimeout     ErrorCode = 0x05
	ErrChannelBusy    ErrorCode = 0x06
	ErrLockRequired   ErrorCode = 0x0A
	ErrInvalidChannel ErrorCode = 0x0B
	ErrOther          ErrorCode = 0x7F
)

var errorNames = map[ErrorCode]string{
	ErrInvalidCmd:     "ERR_INVALID_CMD",
	ErrInvalidPar:     "ERR_INVALID_PAR",
	ErrInvalidLen:     "ERR_INVALID_LEN",
	ErrInvalidSeq:     "ERR_INVALID_SEQ",
	ErrMsgTimeout:     "ERR_MSG_TIMEOUT",
	ErrChannelBusy:    "ERR_CHANNEL_BUSY",
	ErrLockRequired:   "ERR_LOCK_REQUIRED",
	ErrInvalidChannel: "ERR_INVALID_CHANNEL",
	ErrOther:          "ERR_OTHER",
}

// Error implements error, naming the code as the specification does.
func (e ErrorCode) Error() string {
	if name, ok := errorNames[e]; ok {
		return fmt.Sprintf("%s (0x%02x)", name, byte(e))
	}
	return fmt.Sprintf("CTAPHID error 0x%02x", byte(e))
}

// packet is one 64-byte report.
type packet [ReportSize]byte

func (p *packet) cid() uint32 { return binary.BigEndian.Uint32(p[0:4]) }

// isInit reports whether p is an init packet (bit 7 of byte 4 set).
func (p *packet) isInit() bool { return p[4]&0x80 != 0 }

// bcnt is the declared message length of an init packet.
func (p *packet) bcnt() int { return int(binary.BigEndian.Uint16(p[5:7])) }

// writeMessage fragments one message into reports and writes them one Write
// per report, so that a packet-oriented writer (uhid) sees whole reports.
func writeMessage(w io.Writer, cid uint32, cmd byte, data []byte) error {
	if len(data) > MaxPayload {
		return fmt.Errorf("ctaphid: message of %d bytes exceeds %d", len(data), MaxPayload)
	}
	var p packet
	binary.BigEndian.PutUint32(p[0:4], cid)
	p[4] = cmd
	binary.BigEndian.PutUint16(p[5:7], uint16(len(data)))
	n := copy(p[7:], data)
	if _, err := w.Write(p[:]); err != nil {
		return err
	}
	data = data[n:]
	for seq := byte(0); len(data) > 0; seq++ {
		clear(p[4:])
		p[4] = seq
		n = copy(p[5:], data)
		if _, err := w.Write(p[:]); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}
