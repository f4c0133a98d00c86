// Package ctaphid implements CTAPHID framing, the FIDO USB HID transport
// (CTAP 2.1 §11.2 "USB Human Interface Device (USB HID)"), over any stream of
// 64-byte reports: a Unix socket, a uhid device or an in-memory pipe.
//
// Server splits the stream into init and continuation packets, reassembles
// messages, manages channel IDs (CTAPHID_INIT), locks (CTAPHID_LOCK),
// cancellation (CTAPHID_CANCEL) and keepalives, and hands complete CTAP2
// messages (CTAPHID_CBOR) to a Handler one at a time. Several connections may
// share one Server; they then see one device, exactly like several processes
// opening the same HID device node. U2F (CTAPHID_MSG) is not implemented: it is
// answered with SW_INS_NOT_SUPPORTED and the device advertises CAPABILITY_NMSG.
//
// Client is the matching host side, used by tests and benchmarks to talk to a
// Server over a socket.
//
// The package imports no other authd package: the CTAP2 engine satisfies
// Handler structurally.
package ctaphid
