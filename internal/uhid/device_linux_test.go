package uhid

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd/ctaphid"
)

func newDevice(t *testing.T, cfg Config) (*Device, *kernel) {
	t.Helper()
	user, k := newKernel(t)
	d, err := New(user, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, k
}

func TestCreate2(t *testing.T) {
	cfg := Config{Name: "test key", Phys: "authd/test", Uniq: "uniq-1", Vendor: 0x1234, Product: 0xabcd, Version: 0x0102}
	_, k := newDevice(t, cfg)
	ev := k.expect(kCreate2)
	for _, f := range []struct {
		name      string
		got, want string
	}{
		{"name", cstring(ev[kName:kPhys]), cfg.Name},
		{"phys", cstring(ev[kPhys:kUniq]), cfg.Phys},
		{"uniq", cstring(ev[kUniq:kRDSize]), cfg.Uniq},
	} {
		if f.got != f.want {
			t.Errorf("%s %q, want %q", f.name, f.got, f.want)
		}
	}
	for _, f := range []struct {
		name      string
		got, want uint32
	}{
		{"bus", uint32(ne.Uint16(ev[kBus:])), 3}, // BUS_USB
		{"vendor", ne.Uint32(ev[kVendor:]), 0x1234},
		{"product", ne.Uint32(ev[kProduct:]), 0xabcd},
		{"version", ne.Uint32(ev[kVersion:]), 0x0102},
		{"country", ne.Uint32(ev[kCountry:]), 0},
	} {
		if f.got != f.want {
			t.Errorf("%s %#x, want %#x", f.name, f.got, f.want)
		}
	}
	rd := ReportDescriptor()
	if n := int(ne.Uint16(ev[kRDSize:])); n != len(rd) || !bytes.Equal(ev[kRDData:kRDData+n], rd) {
		t.Errorf("rd_size %d, rd_data % x; want the FIDO descriptor % x", n, ev[kRDData:kRDData+n], rd)
	}
	if !bytes.Equal(ev[kRDData+len(rd):], make([]byte, kEventSize-kRDData-len(rd))) {
		t.Error("bytes after the descriptor are not zero")
	}
}

func TestConfigDefaults(t *testing.T) {
	d1, k := newDevice(t, Config{})
	ev := k.expect(kCreate2)
	if name := cstring(ev[kName:kPhys]); name != "authd passkeys" {
		t.Errorf("name %q", name)
	}
	if v, p := ne.Uint32(ev[kVendor:]), ne.Uint32(ev[kProduct:]); v != 0x1209 || p != 0x0001 {
		t.Errorf("vendor:product %04x:%04x, want 1209:0001", v, p)
	}
	uniq := cstring(ev[kUniq:kRDSize])
	if prefix := fmt.Sprintf("authd-%d-", os.Getpid()); !strings.HasPrefix(uniq, prefix) || len(uniq) != len(prefix)+8 {
		t.Errorf("uniq %q, want %s<8 hex digits>", uniq, prefix)
	}
	if d1.Config().Uniq != uniq {
		t.Errorf("Config().Uniq %q, device has %q", d1.Config().Uniq, uniq)
	}
	d2, _ := newDevice(t, Config{})
	if d2.Config().Uniq == uniq {
		t.Error("two devices got the same uniq")
	}
}

func TestConfigInvalid(t *testing.T) {
	for _, cfg := range []Config{
		{Name: strings.Repeat("n", 128)},
		{Phys: strings.Repeat("p", 64)},
		{Uniq: strings.Repeat("u", 64)},
		{Uniq: "a\x00b"},
		{Name: "two\nlines"},
	} {
		user, k := newKernel(t)
		if _, err := New(user, cfg, nil); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
		k.c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		if n, err := k.c.Read(make([]byte, kEventSize)); err == nil {
			t.Errorf("New(%+v) failed but wrote %d bytes", cfg, n)
		}
	}
	// The longest strings that fit are fine.
	if _, err := (Config{Name: strings.Repeat("n", 127), Uniq: strings.Repeat("u", 63)}).withDefaults(); err != nil {
		t.Error(err)
	}
}

// readReport reads one report from d, or fails the test.
func readReport(t *testing.T, d *Device) []byte {
	t.Helper()
	d.SetReadDeadline(time.Now().Add(5 * time.Second))
	p := make([]byte, ReportSize)
	if _, err := io.ReadFull(d, p); err != nil {
		t.Fatalf("Read: %v", err)
	}
	return p
}

func pattern(seed byte) []byte {
	p := make([]byte, ReportSize)
	for i := range p {
		p[i] = seed + byte(i)
	}
	return p
}

func TestEvents(t *testing.T) {
	d, k := newDevice(t, Config{})
	k.expect(kCreate2)
	if d.Started() || d.Opened() {
		t.Fatal("started or opened before any event")
	}

	// A hidraw write of report number 0 and 64 bytes arrives as 65 bytes.
	start := kev(kStart)
	ne.PutUint64(start[kStartFlags:], 0)
	k.send(start)
	k.send(kev(kOpen))
	r1 := pattern(1)
	k.send(kOutputEvent(append([]byte{0}, r1...), kOutputReport))
	if got := readReport(t, d); !bytes.Equal(got, r1) {
		t.Fatalf("report % x, want % x", got, r1)
	}
	if !d.Started() || !d.Opened() {
		t.Fatalf("Started %v Opened %v after START and OPEN", d.Started(), d.Opened())
	}

	// GET_REPORT is refused; a bare 64-byte report is taken as is.
	k.send(kReportRequest(kGetReport, 7, kFeatureReport))
	r2 := pattern(2)
	k.send(kOutputEvent(r2, kOutputReport))
	if got := readReport(t, d); !bytes.Equal(got, r2) {
		t.Fatalf("report % x, want % x", got, r2)
	}
	reply := k.expect(kGetReportReply)
	if id, e := ne.Uint32(reply[kReqID:]), ne.Uint16(reply[kReplyErr:]); id != 7 || e != kEIO {
		t.Errorf("GET_REPORT_REPLY id %d err %d, want 7, EIO", id, e)
	}

	// Everything that is not a CTAPHID report is dropped on the way.
	k.send(kReportRequest(kSetReport, 8, kFeatureReport))
	k.send(kOutputEvent(append([]byte{5}, r1...), kOutputReport)) // report number 5
	k.send(kOutputEvent(r1[:63], kOutputReport))
	k.send(kOutputEvent(append(r1, 0, 0), kOutputReport))
	k.send(kOutputEvent(append([]byte{0}, r1...), kFeatureReport))
	bad := kev(kOutput)
	ne.PutUint16(bad[kOutputSize:], 4097)
	k.send(bad)
	k.send(kev(99))
	k.send([]byte{6, 0}) // shorter than a type
	k.send(kev(kClose))
	k.send(kev(kStop))
	r3 := pattern(3)
	k.send(kOutputEvent(append([]byte{0}, r3...), kOutputReport))
	if got := readReport(t, d); !bytes.Equal(got, r3) {
		t.Fatalf("report % x, want % x", got, r3)
	}
	reply = k.expect(kSetReportReply)
	if id, e := ne.Uint32(reply[kReqID:]), ne.Uint16(reply[kReplyErr:]); id != 8 || e != kEIO {
		t.Errorf("SET_REPORT_REPLY id %d err %d, want 8, EIO", id, e)
	}
	if d.Started() || d.Opened() {
		t.Fatalf("Started %v Opened %v after CLOSE and STOP", d.Started(), d.Opened())
	}
}

func TestReadSmallBuffer(t *testing.T) {
	d, k := newDevice(t, Config{})
	k.expect(kCreate2)
	r := pattern(9)
	k.send(kOutputEvent(append([]byte{0}, r...), kOutputReport))
	var got []byte
	for len(got) < ReportSize {
		p := make([]byte, 10)
		n, err := d.Read(p)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, p[:n]...)
	}
	if !bytes.Equal(got, r) {
		t.Fatalf("got % x, want % x", got, r)
	}
	if n, err := d.Read(nil); n != 0 || err != nil {
		t.Fatalf("Read(nil) = %d, %v", n, err)
	}
}

func TestWrite(t *testing.T) {
	d, k := newDevice(t, Config{})
	k.expect(kCreate2)
	two := append(pattern(1), pattern(2)...)
	if n, err := d.Write(two); n != 128 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	for i := range 2 {
		ev := k.expect(kInput2)
		if n := ne.Uint16(ev[kInput2Size:]); n != ReportSize {
			t.Fatalf("INPUT2 size %d, want 64 (no report ID)", n)
		}
		if got := ev[kInput2Data : kInput2Data+ReportSize]; !bytes.Equal(got, two[64*i:64*(i+1)]) {
			t.Fatalf("INPUT2 data % x", got)
		}
	}
	if _, err := d.Write(make([]byte, 65)); err == nil {
		t.Fatal("Write of 65 bytes succeeded")
	}
}

func TestCloseDestroys(t *testing.T) {
	d, k := newDevice(t, Config{})
	k.expect(kCreate2)
	// As ctaphid leaves it at shutdown.
	if err := d.SetDeadline(time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Read(make([]byte, 64)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read after a past deadline: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	k.expect(kDestroy)
	k.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := k.c.Read(make([]byte, kEventSize)); err != io.EOF {
		t.Fatalf("after DESTROY: %v, want EOF (file closed)", err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := d.WaitStarted(context.Background()); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("WaitStarted after Close: %v", err)
	}
}

func TestWaitStarted(t *testing.T) {
	d, k := newDevice(t, Config{})
	k.expect(kCreate2)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := d.WaitStarted(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitStarted without START: %v", err)
	}

	readErr := make(chan error, 1)
	go func() {
		_, err := d.Read(make([]byte, ReportSize))
		readErr <- err
	}()
	k.send(kev(kStart))
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.WaitStarted(ctx); err != nil {
		t.Fatal(err)
	}
	d.Close()
	if err := <-readErr; err == nil {
		t.Fatal("Read returned no error after Close")
	}
}

func TestNoDeadlines(t *testing.T) {
	d, err := New(nopRW{}, Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, set := range []func(time.Time) error{d.SetDeadline, d.SetReadDeadline, d.SetWriteDeadline} {
		if err := set(time.Time{}); !errors.Is(err, os.ErrNoDeadline) {
			t.Errorf("got %v, want os.ErrNoDeadline", err)
		}
	}
}

type nopRW struct{}

func (nopRW) Read([]byte) (int, error)    { return 0, io.EOF }
func (nopRW) Write(p []byte) (int, error) { return len(p), nil }
func (nopRW) Close() error                { return nil }

// echo answers every CTAPHID_CBOR message with CTAP2_OK and the message.
type echo struct{}

func (echo) ServeCTAP(_ context.Context, msg []byte, _ func(byte)) []byte {
	return append([]byte{0}, msg...)
}

// host is a HID host on the kernel side: it writes reports as hidraw does
// (report number 0 first) and reads INPUT2 events.
type host struct{ k *kernel }

func (h host) Write(p []byte) (int, error) {
	h.k.send(kOutputEvent(append([]byte{0}, p...), kOutputReport))
	return len(p), nil
}

func (h host) Read(p []byte) (int, error) {
	ev := h.k.expect(kInput2)
	if n := ne.Uint16(ev[kInput2Size:]); n != ReportSize {
		return 0, fmt.Errorf("INPUT2 of %d bytes", n)
	}
	return copy(p, ev[kInput2Data:kInput2Data+ReportSize]), nil
}

// TestServeCTAPHID serves a ctaphid.Server over a Device and runs
// CTAPHID_INIT and a CBOR round trip through the kernel side.
func TestServeCTAPHID(t *testing.T) {
	d, k := newDevice(t, Config{})
	k.expect(kCreate2)
	k.send(kev(kStart))
	k.send(kev(kOpen))

	srv := ctaphid.NewServer(echo{}, ctaphid.Config{Version: [3]byte{1, 2, 3}})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.ServeConn(ctx, d) }()

	wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer wcancel()
	if err := d.WaitStarted(wctx); err != nil {
		t.Fatal(err)
	}
	c := ctaphid.NewClient(host{k})
	info, err := c.Init(wctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.CID == 0 || info.CID == ctaphid.BroadcastCID || info.Protocol != 2 || info.Version != [3]byte{1, 2, 3} {
		t.Fatalf("INIT response %+v", info)
	}
	msg := bytes.Repeat([]byte{0x04, 0xA0}, 100) // several continuation packets each way
	cmd, resp, err := c.Call(wctx, ctaphid.CmdCBOR, msg)
	if err != nil || cmd != ctaphid.CmdCBOR || !bytes.Equal(resp, append([]byte{0}, msg...)) {
		t.Fatalf("CBOR: cmd %#x, %d bytes, err %v", cmd, len(resp), err)
	}

	cancel()
	select {
	case err := <-served:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("ServeConn returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServeConn did not return after cancel")
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	k.expect(kDestroy)
}
