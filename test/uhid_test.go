package test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/authd/authd/ctaphid"
	"github.com/authd/authd/internal/daemon"
	"github.com/authd/authd/internal/uhid"
)

// fakeKernel is the kernel's side of /dev/uhid over a SOCK_SEQPACKET pair
// (one event per packet, like the character device): it answers CREATE2
// with START and OPEN, turns host reports into UHID_OUTPUT (with the
// report-ID byte hidraw adds) and UHID_INPUT2 back into reports. It is an
// io.ReadWriter of 64-byte reports for a ctaphid.Client, i.e. a host that
// opened the hidraw node. The real kernel path is tested in test/vm.
type fakeKernel struct {
	c       net.Conn
	created chan struct{}
	buf     []byte
}

// uhid event layout (include/uapi/linux/uhid.h).
const (
	evCreate2 = 11
	evDestroy = 1
	evStart   = 2
	evOpen    = 4
	evOutput  = 6
	evInput2  = 12
	evSize    = 4380
)

// newFakeKernel returns the device side (for uhid.New) and the kernel side.
func newFakeKernel(tb testing.TB) (net.Conn, *fakeKernel) {
	tb.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		tb.Fatal(err)
	}
	conn := func(fd int, name string) net.Conn {
		f := os.NewFile(uintptr(fd), name)
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			tb.Fatal(err)
		}
		return c
	}
	return conn(fds[0], "uhid-device"), &fakeKernel{c: conn(fds[1], "uhid-kernel"), created: make(chan struct{}), buf: make([]byte, evSize)}
}

func (k *fakeKernel) send(typ uint32, body []byte) error {
	ev := make([]byte, 4+len(body))
	binary.NativeEndian.PutUint32(ev, typ)
	copy(ev[4:], body)
	_, err := k.c.Write(ev)
	return err
}

// Write sends one host report as UHID_OUTPUT, report ID 0 first.
func (k *fakeKernel) Write(p []byte) (int, error) {
	if len(p) != uhid.ReportSize {
		return 0, fmt.Errorf("fake kernel: report of %d bytes", len(p))
	}
	body := make([]byte, 4096+3)
	copy(body[1:], p)                                      // data[0] is the report ID
	binary.NativeEndian.PutUint16(body[4096:], uint16(65)) // size
	body[4098] = 1                                         // rtype UHID_OUTPUT_REPORT
	return len(p), k.send(evOutput, body)
}

// Read returns the next UHID_INPUT2 report; CREATE2 is answered with START
// and OPEN on the way.
func (k *fakeKernel) Read(p []byte) (int, error) {
	for {
		n, err := k.c.Read(k.buf)
		if err != nil {
			return 0, err
		}
		if n < 4 {
			return 0, fmt.Errorf("fake kernel: event of %d bytes", n)
		}
		switch typ := binary.NativeEndian.Uint32(k.buf); typ {
		case evCreate2:
			if err := k.send(evStart, make([]byte, 8)); err != nil {
				return 0, err
			}
			if err := k.send(evOpen, nil); err != nil {
				return 0, err
			}
			close(k.created)
		case evInput2:
			size := int(binary.NativeEndian.Uint16(k.buf[4:]))
			if size != uhid.ReportSize || n < 6+size {
				return 0, fmt.Errorf("fake kernel: INPUT2 of %d bytes in a %d-byte event", size, n)
			}
			return copy(p, k.buf[6:6+size]), nil
		case evDestroy:
			return 0, errors.New("fake kernel: device destroyed")
		default:
			return 0, fmt.Errorf("fake kernel: unexpected event %d", typ)
		}
	}
}

// uhidDaemon is a daemon serving its uhid door on fake kernels; every
// (re-)creation of the device makes a new one, sent on kernels.
type uhidDaemon struct {
	*daemonT
	kernels chan *fakeKernel
}

func startUHIDDaemon(tb testing.TB) *uhidDaemon {
	tb.Helper()
	dt := startDaemon(tb)
	ud := &uhidDaemon{daemonT: dt, kernels: make(chan *fakeKernel, 4)}
	door, err := dt.d.OpenUHIDWith(daemon.UHIDOn, func(cfg uhid.Config) (*uhid.Device, error) {
		dev, k := newFakeKernel(tb)
		ud.kernels <- k
		return uhid.New(dev, cfg, nil)
	})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); dt.d.ServeUHID(ctx, door) }()
	// Runs before startDaemon's cleanup (LIFO): the door is gone before
	// the daemon closes.
	tb.Cleanup(func() { cancel(); wg.Wait() })
	return ud
}

// host opens the next device the daemon creates, as a process opening the
// hidraw node.
func (ud *uhidDaemon) host(tb testing.TB) (*ctaphid.Client, *fakeKernel) {
	tb.Helper()
	var k *fakeKernel
	select {
	case k = <-ud.kernels:
	case <-time.After(30 * time.Second):
		tb.Fatal("the daemon created no uhid device")
	}
	c := ctaphid.NewClient(k)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.Init(ctx); err != nil {
		tb.Fatalf("CTAPHID_INIT over uhid: %v", err)
	}
	return c, k
}

// TestUHIDDoorServesAndRecovers: the daemon's uhid door serves the engine
// (makeCredential and getAssertion through UHID_OUTPUT/INPUT2), and when the
// device fails it is re-created and serves again with the same passkeys.
func TestUHIDDoorServesAndRecovers(t *testing.T) {
	ud := startUHIDDaemon(t)
	c, k := ud.host(t)
	ga := gaMessage(t, ud.daemonT) // the credential is made over the socket door
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, resp, err := c.Call(ctx, ctaphid.CmdCBOR, ga); err != nil || resp[0] != 0 {
		t.Fatalf("getAssertion over uhid: %v %x", err, resp[:min(1, len(resp))])
	}
	if _, resp, err := c.Call(ctx, ctaphid.CmdCBOR, mcMessage(t, true, 2)); err != nil || resp[0] != 0 {
		t.Fatalf("makeCredential over uhid: %v %x", err, resp[:min(1, len(resp))])
	}

	// The device fails (the kernel side goes away): authd re-creates it.
	k.c.Close()
	c2, _ := ud.host(t)
	if _, resp, err := c2.Call(ctx, ctaphid.CmdCBOR, ga); err != nil || resp[0] != 0 {
		t.Fatalf("getAssertion on the re-created device: %v %x", err, resp[:min(1, len(resp))])
	}
}

// BenchmarkUHIDGetAssertion is BenchmarkSocketGetAssertion through the uhid
// door: 4380-byte uhid events instead of bare reports, one packet per
// report, the report-ID byte stripped and added (the kernel's own hidraw
// cost is not included: it is the same for a USB key).
func BenchmarkUHIDGetAssertion(b *testing.B) {
	ud := startUHIDDaemon(b)
	c, _ := ud.host(b)
	msg := gaMessage(b, ud.daemonT)
	ctx := context.Background()
	for b.Loop() {
		if _, resp, err := c.Call(ctx, ctaphid.CmdCBOR, msg); err != nil || resp[0] != 0 {
			b.Fatalf("getAssertion: %v", err)
		}
	}
}
