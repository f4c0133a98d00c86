package uhid

import (
	"encoding/binary"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// The struct uhid_event layout, written out independently of event.go's
// constants (include/uapi/linux/uhid.h; the union starts at offset 4).
const (
	kEventSize = 4380
	// uhid_create2_req
	kName, kPhys, kUniq           = 4, 132, 196
	kRDSize, kBus                 = 260, 262
	kVendor, kProduct             = 264, 268
	kVersion, kCountry, kRDData   = 272, 276, 280
	kInput2Size, kInput2Data      = 4, 6       // uhid_input2_req
	kOutputSize, kOutputRType     = 4100, 4102 // uhid_output_req: data[4096] first
	kReqID, kReqRNum, kReqRType   = 4, 8, 9    // uhid_get_report_req, uhid_set_report_req
	kReplyErr                     = 8          // uhid_{get,set}_report_reply_req
	kStartFlags                   = 4
	kDestroy, kStart, kStop       = 1, 2, 3
	kOpen, kClose, kOutput        = 4, 5, 6
	kGetReport, kGetReportReply   = 9, 10
	kCreate2, kInput2             = 11, 12
	kSetReport, kSetReportReply   = 13, 14
	kOutputReport, kFeatureReport = 1, 0 // enum uhid_report_type
	kEIO                          = 5
)

var ne = binary.NativeEndian

// kernel is the /dev/uhid side of a Device under test: a SOCK_SEQPACKET
// socket, which keeps event boundaries as the character device does.
type kernel struct {
	t *testing.T
	c net.Conn
}

// newKernel returns the user side (for New) and the kernel side of a
// socketpair.
func newKernel(t *testing.T) (net.Conn, *kernel) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) net.Conn {
		f := os.NewFile(uintptr(fd), "seqpacket")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	user, k := conn(fds[0]), &kernel{t: t, c: conn(fds[1])}
	t.Cleanup(func() { user.Close(); k.c.Close() })
	return user, k
}

// recv reads the next event written by the Device, zero-extended as the
// kernel does with short writes.
func (k *kernel) recv() []byte {
	k.t.Helper()
	buf := make([]byte, 2*kEventSize)
	k.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := k.c.Read(buf)
	if err != nil {
		k.t.Fatalf("kernel: read event: %v", err)
	}
	if n < 4 || n > kEventSize {
		k.t.Fatalf("kernel: event of %d bytes", n)
	}
	return buf[:kEventSize]
}

// expect reads the next event and checks its type.
func (k *kernel) expect(typ uint32) []byte {
	k.t.Helper()
	ev := k.recv()
	if got := ne.Uint32(ev); got != typ {
		k.t.Fatalf("kernel: got event %d, want %d", got, typ)
	}
	return ev
}

// send writes one kernel event, whole, as uhid_char_read does.
func (k *kernel) send(ev []byte) {
	k.t.Helper()
	if _, err := k.c.Write(ev); err != nil {
		k.t.Fatalf("kernel: write event: %v", err)
	}
}

func kev(typ uint32) []byte {
	b := make([]byte, kEventSize)
	ne.PutUint32(b, typ)
	return b
}

func kOutputEvent(data []byte, rtype byte) []byte {
	b := kev(kOutput)
	copy(b[4:], data)
	ne.PutUint16(b[kOutputSize:], uint16(len(data)))
	b[kOutputRType] = rtype
	return b
}

func kReportRequest(typ, id uint32, rtype byte) []byte {
	b := kev(typ)
	ne.PutUint32(b[kReqID:], id)
	b[kReqRNum] = 0
	b[kReqRType] = rtype
	return b
}

// cstring returns a NUL-terminated field's string.
func cstring(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
