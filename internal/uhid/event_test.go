package uhid

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"testing"
)

// TestReportDescriptor checks the descriptor against CTAP 2.1 §11.2.8.1
// item by item.
func TestReportDescriptor(t *testing.T) {
	want := "06d0f1 0901 a101 " +
		"0920 1500 26ff00 7508 9540 8102 " +
		"0921 1500 26ff00 7508 9540 9102 c0"
	if got := fmt.Sprintf("%x", ReportDescriptor()); got != strings.ReplaceAll(want, " ", "") {
		t.Fatalf("descriptor %s, want %s", got, want)
	}
	ReportDescriptor()[0] = 0 // callers get a copy
	if ReportDescriptor()[0] != 0x06 {
		t.Fatal("ReportDescriptor returned shared memory")
	}
}

// TestLayout pins the offsets to the values computed by hand from uhid.h.
func TestLayout(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want int
	}{
		{"sizeof(struct uhid_event)", eventSize, 4380},
		{"create2.rd_size", create2RDSize, 260},
		{"create2.bus", create2Bus, 262},
		{"create2.rd_data", create2RDData, 280},
		{"create2 end", create2RDData + dataMax, 4376},
		{"output.size", outputSize, 4100},
		{"output.rtype", outputRType, 4102},
		{"input2.data", input2Data, 6},
		{"set_report.data", setData, 12},
	} {
		if c.got != c.want {
			t.Errorf("%s at %d, want %d", c.name, c.got, c.want)
		}
	}
}

func TestEncodeShortEvents(t *testing.T) {
	ne := binary.NativeEndian
	in := encodeInput2(bytes.Repeat([]byte{7}, ReportSize))
	if len(in) != 6+ReportSize || ne.Uint32(in) != evInput2 || ne.Uint16(in[4:]) != ReportSize {
		t.Errorf("INPUT2 % x", in)
	}
	if d := encodeDestroy(); !bytes.Equal(d, ne.AppendUint32(nil, 1)) {
		t.Errorf("DESTROY % x", d)
	}
	r := encodeReply(evSetReportReply, 0x01020304)
	if len(r) != 10 || ne.Uint32(r) != 14 || ne.Uint32(r[4:]) != 0x01020304 || ne.Uint16(r[8:]) != 5 {
		t.Errorf("SET_REPORT_REPLY % x", r)
	}
}

// outputEvent builds a kernel OUTPUT event of n bytes (n ≥ 4103).
func outputEvent(n int, data []byte, rtype byte) []byte {
	b := make([]byte, n)
	binary.NativeEndian.PutUint32(b, evOutput)
	copy(b[outputData:], data)
	binary.NativeEndian.PutUint16(b[outputSize:], uint16(len(data)))
	b[outputRType] = rtype
	return b
}

func TestDecodeEvent(t *testing.T) {
	report := bytes.Repeat([]byte{0xAB}, ReportSize)
	for _, c := range []struct {
		name   string
		in     []byte
		err    bool
		typ    uint32
		report []byte // what outputReport must return, if anything
	}{
		{"empty", nil, true, 0, nil},
		{"3 bytes", []byte{2, 0, 0}, true, 0, nil},
		{"START, short read", []byte{2, 0, 0, 0}, false, evStart, nil},
		{"unknown type", []byte{0xff, 0xff, 0xff, 0xff}, false, 0xffffffff, nil},
		{"OUTPUT 65", outputEvent(eventSize, append([]byte{0}, report...), rtypeOutput), false, evOutput, report},
		{"OUTPUT 64", outputEvent(eventSize, report, rtypeOutput), false, evOutput, report},
		{"OUTPUT 65, report number 1", outputEvent(eventSize, append([]byte{1}, report...), rtypeOutput), false, evOutput, nil},
		{"OUTPUT 63", outputEvent(eventSize, report[1:], rtypeOutput), false, evOutput, nil},
		{"OUTPUT feature", outputEvent(eventSize, report, 0), false, evOutput, nil},
		{"OUTPUT, longer read", outputEvent(eventSize+100, report, rtypeOutput), false, evOutput, report},
		{"OUTPUT without size", outputEvent(eventSize, report, rtypeOutput)[:outputSize], false, evOutput, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			ev, err := decodeEvent(c.in)
			if (err != nil) != c.err {
				t.Fatalf("err %v, want error %v", err, c.err)
			}
			if err != nil {
				return
			}
			if ev.typ != c.typ {
				t.Errorf("type %d, want %d", ev.typ, c.typ)
			}
			r, ok := outputReport(ev)
			if !bytes.Equal(r, c.report) || ok != (c.report != nil) {
				t.Errorf("report % x (%v), want % x", r, ok, c.report)
			}
		})
	}
	big := outputEvent(eventSize, nil, rtypeOutput)
	binary.NativeEndian.PutUint16(big[outputSize:], dataMax+1)
	if _, err := decodeEvent(big); err == nil {
		t.Error("OUTPUT with size 4097 decoded")
	}
	req := make([]byte, eventSize)
	binary.NativeEndian.PutUint32(req, evGetReport)
	binary.NativeEndian.PutUint32(req[reqID:], 77)
	if ev, err := decodeEvent(req); err != nil || ev.id != 77 {
		t.Errorf("GET_REPORT id %d, %v", ev.id, err)
	}
}

// oneEvent is a kernel side that delivers one event, then io.EOF, and
// swallows writes.
type oneEvent struct{ ev []byte }

func (o *oneEvent) Read(p []byte) (int, error) {
	if o.ev == nil {
		return 0, io.EOF
	}
	n := copy(p, o.ev) // like a datagram: the rest of a long event is lost
	o.ev = nil
	return n, nil
}

func (o *oneEvent) Write(p []byte) (int, error) { return len(p), nil }
func (o *oneEvent) Close() error                { return nil }

// FuzzDecodeEvent feeds arbitrary events to the decoder and to Device.Read:
// nothing panics, every report Read returns has 64 bytes, and Read returns
// a report exactly when the decoder finds one.
//
// The event is head or, if tail is not empty, head zero-padded to offset
// 4100 (uhid_output_req's size and rtype) followed by tail. So every field
// is reachable with short inputs: the fuzzer spends minutes minimizing an
// interesting input of 4 KiB. (The seed corpus is written for
// little-endian hosts.)
func FuzzDecodeEvent(f *testing.F) {
	f.Add([]byte{2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0}, []byte{})
	f.Add(append([]byte{6, 0, 0, 0, 0}, bytes.Repeat([]byte{0xFF}, ReportSize)...), []byte{65, 0, rtypeOutput})
	f.Fuzz(func(t *testing.T, head, tail []byte) {
		b := head
		if len(tail) > 0 {
			b = append(b, make([]byte, max(0, outputSize-len(b)))...)
			b = append(b, tail...)
		}
		ev, err := decodeEvent(b)
		if err == nil && len(ev.data) > dataMax {
			t.Fatalf("OUTPUT data of %d bytes", len(ev.data))
		}
		want, ok := outputReport(ev)
		if ok && len(want) != ReportSize {
			t.Fatalf("report of %d bytes", len(want))
		}
		want = bytes.Clone(want)

		d, err := New(&oneEvent{ev: b}, Config{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		var got [][]byte
		for {
			p := make([]byte, ReportSize)
			n, err := d.Read(p)
			if err != nil {
				break
			}
			if n != ReportSize {
				t.Fatalf("Read returned %d bytes", n)
			}
			got = append(got, p)
		}
		if ok != (len(got) == 1) || len(got) > 1 || ok && !bytes.Equal(got[0], want) {
			t.Fatalf("Read returned %d reports (% x); the decoder found % x", len(got), got, want)
		}
	})
}
