package uhid

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The uhid event ABI (include/uapi/linux/uhid.h). Every read or write of
// /dev/uhid is one struct uhid_event: a __u32 type and a packed union. All
// integers are in host byte order.
const (
	// eventSize is sizeof(struct uhid_event): 4 bytes of type, then the
	// union, whose largest member is uhid_create2_req (4372 bytes), padded to
	// 4376 by the __u64 of uhid_start_req. A read returns at most this.
	eventSize = 4380
	// dataMax is UHID_DATA_MAX, the most report bytes an event carries.
	dataMax = 4096
	// payload is the offset of the union.
	payload = 4
)

// Event types (enum uhid_event_type). The gaps are the legacy CREATE,
// OUTPUT_EV and INPUT events, which authd never uses.
const (
	evDestroy        uint32 = 1
	evStart          uint32 = 2
	evStop           uint32 = 3
	evOpen           uint32 = 4
	evClose          uint32 = 5
	evOutput         uint32 = 6
	evGetReport      uint32 = 9
	evGetReportReply uint32 = 10
	evCreate2        uint32 = 11
	evInput2         uint32 = 12
	evSetReport      uint32 = 13
	evSetReportReply uint32 = 14
)

// Field offsets inside the event, union offset included.
const (
	// struct uhid_create2_req
	create2Name    = payload           // name[128]
	create2Phys    = create2Name + 128 // phys[64]
	create2Uniq    = create2Phys + 64  // uniq[64]
	create2RDSize  = create2Uniq + 64  // rd_size u16
	create2Bus     = create2RDSize + 2 // bus u16
	create2Vendor  = create2Bus + 2    // vendor u32
	create2Product = create2Vendor + 4 // product u32
	create2Version = create2Product + 4
	create2Country = create2Version + 4
	create2RDData  = create2Country + 4 // rd_data[4096]

	// struct uhid_input2_req
	input2Size = payload        // size u16
	input2Data = input2Size + 2 // data[4096]

	// struct uhid_output_req: the data comes first.
	outputData  = payload
	outputSize  = outputData + dataMax // size u16
	outputRType = outputSize + 2       // rtype u8

	// struct uhid_get_report_req, uhid_set_report_req and their replies all
	// start with the request id.
	reqID    = payload   // id u32
	reqRNum  = reqID + 4 // rnum u8 (requests)
	reqRType = reqID + 5 // rtype u8 (requests)
	setSize  = reqID + 6 // size u16 (uhid_set_report_req)
	setData  = reqID + 8 // data[4096] (uhid_set_report_req)
	replyErr = reqID + 4 // err u16 (replies)

	// struct uhid_start_req
	startFlags = payload // dev_flags u64
)

const (
	busUSB = 0x03 // BUS_USB: libfido2 ignores hidraw devices on other buses

	rtypeOutput = 1 // UHID_OUTPUT_REPORT (enum uhid_report_type)

	// errIO is EIO, the answer to GET_REPORT and SET_REPORT: CTAPHID uses
	// neither. The kernel only checks that err is non-zero.
	errIO = 5
)

var hostEndian = binary.NativeEndian

// ReportDescriptor is the HID report descriptor of a CTAPHID device
// (CTAP 2.1 §11.2.8.1): usage page FIDO Alliance (0xF1D0), usage CTAPHID,
// one 64-byte input report (usage 0x20) and one 64-byte output report (usage
// 0x21), no report IDs. The usage page is what makes hosts treat the device
// as a security key.
func ReportDescriptor() []byte {
	return []byte{
		0x06, 0xD0, 0xF1, // Usage Page (FIDO Alliance)
		0x09, 0x01, // Usage (CTAPHID)
		0xA1, 0x01, // Collection (Application)
		0x09, 0x20, //   Usage (Input Report Data)
		0x15, 0x00, //   Logical Minimum (0)
		0x26, 0xFF, 0x00, //   Logical Maximum (255)
		0x75, 0x08, //   Report Size (8)
		0x95, 0x40, //   Report Count (64)
		0x81, 0x02, //   Input (Data, Var, Abs)
		0x09, 0x21, //   Usage (Output Report Data)
		0x15, 0x00, //   Logical Minimum (0)
		0x26, 0xFF, 0x00, //   Logical Maximum (255)
		0x75, 0x08, //   Report Size (8)
		0x95, 0x40, //   Report Count (64)
		0x91, 0x02, //   Output (Data, Var, Abs)
		0xC0, // End Collection
	}
}

// Events written to the kernel are as short as their content: the kernel
// zero-fills the rest of a short write ("If user-space writes short events,
// they're extended with 0s by the kernel", uhid.h), which spares copying 4 KiB
// per report.

// encodeCreate2 returns UHID_CREATE2 for cfg, which must be valid (see
// Config.check), with the report descriptor rd.
func encodeCreate2(cfg Config, rd []byte) []byte {
	b := make([]byte, create2RDData+len(rd))
	hostEndian.PutUint32(b, evCreate2)
	copy(b[create2Name:create2Phys], cfg.Name) // NUL-terminated by the zeros after it
	copy(b[create2Phys:create2Uniq], cfg.Phys)
	copy(b[create2Uniq:create2RDSize], cfg.Uniq)
	hostEndian.PutUint16(b[create2RDSize:], uint16(len(rd)))
	hostEndian.PutUint16(b[create2Bus:], busUSB)
	hostEndian.PutUint32(b[create2Vendor:], cfg.Vendor)
	hostEndian.PutUint32(b[create2Product:], cfg.Product)
	hostEndian.PutUint32(b[create2Version:], cfg.Version)
	copy(b[create2RDData:], rd)
	return b
}

// encodeInput2 returns UHID_INPUT2 carrying report, without a report ID (the
// descriptor has none).
func encodeInput2(report []byte) []byte {
	b := make([]byte, input2Data+len(report))
	hostEndian.PutUint32(b, evInput2)
	hostEndian.PutUint16(b[input2Size:], uint16(len(report)))
	copy(b[input2Data:], report)
	return b
}

func encodeDestroy() []byte {
	return hostEndian.AppendUint32(nil, evDestroy)
}

// encodeReply returns UHID_GET_REPORT_REPLY or UHID_SET_REPORT_REPLY for
// request id, failing it with EIO. Both replies start with id and err.
func encodeReply(typ, id uint32) []byte {
	b := make([]byte, replyErr+2)
	hostEndian.PutUint32(b, typ)
	hostEndian.PutUint32(b[reqID:], id)
	hostEndian.PutUint16(b[replyErr:], errIO)
	return b
}

// event is a decoded kernel-to-user event.
type event struct {
	typ   uint32
	flags uint64 // START: dev_flags
	id    uint32 // GET_REPORT, SET_REPORT: the request to reply to
	rtype uint8  // OUTPUT, GET_REPORT, SET_REPORT
	data  []byte // OUTPUT: the report as written to hidraw; aliases the input
}

var errShortEvent = errors.New("uhid: event shorter than its type")

// decodeEvent decodes one event read from /dev/uhid. It never panics: a read
// shorter than eventSize is zero-extended, as uhid.h asks of user space, and
// an unknown type decodes to an event with only typ set. Only events whose
// size field exceeds UHID_DATA_MAX are errors.
func decodeEvent(b []byte) (event, error) {
	if len(b) < payload {
		return event{}, errShortEvent
	}
	if len(b) < eventSize {
		full := make([]byte, eventSize)
		copy(full, b)
		b = full
	}
	ev := event{typ: hostEndian.Uint32(b)}
	switch ev.typ {
	case evStart:
		ev.flags = hostEndian.Uint64(b[startFlags:])
	case evOutput:
		n := int(hostEndian.Uint16(b[outputSize:]))
		if n > dataMax {
			return event{}, fmt.Errorf("uhid: OUTPUT event of %d bytes exceeds %d", n, dataMax)
		}
		ev.data = b[outputData : outputData+n]
		ev.rtype = b[outputRType]
	case evGetReport, evSetReport:
		ev.id = hostEndian.Uint32(b[reqID:])
		ev.rtype = b[reqRType]
	}
	return ev, nil
}

// outputReport returns the 64-byte CTAPHID report in an OUTPUT event. A
// hidraw write of report number 0 followed by 64 bytes arrives as 65 bytes
// whose first is 0 (uhid passes the report number on, unlike usbhid); a
// write of exactly 64 bytes is taken as the report itself.
func outputReport(ev event) ([]byte, bool) {
	if ev.rtype != rtypeOutput {
		return nil, false
	}
	switch {
	case len(ev.data) == ReportSize+1 && ev.data[0] == 0:
		return ev.data[1:], true
	case len(ev.data) == ReportSize:
		return ev.data, true
	}
	return nil, false
}

// eventName names t for log lines.
func eventName(t uint32) string {
	switch t {
	case evDestroy:
		return "DESTROY"
	case evStart:
		return "START"
	case evStop:
		return "STOP"
	case evOpen:
		return "OPEN"
	case evClose:
		return "CLOSE"
	case evOutput:
		return "OUTPUT"
	case evGetReport:
		return "GET_REPORT"
	case evGetReportReply:
		return "GET_REPORT_REPLY"
	case evCreate2:
		return "CREATE2"
	case evInput2:
		return "INPUT2"
	case evSetReport:
		return "SET_REPORT"
	case evSetReportReply:
		return "SET_REPORT_REPLY"
	}
	return fmt.Sprintf("unknown(%d)", t)
}
