package ctaphid_test

import (
	"context"
	"fmt"
	"net"

	"github.com/authd/authd/ctaphid"
)

// getInfo is a stand-in for the CTAP2 engine.
type getInfo struct{}

func (getInfo) ServeCTAP(_ context.Context, msg []byte, _ func(byte)) []byte {
	if len(msg) == 1 && msg[0] == 0x04 { // authenticatorGetInfo
		return []byte{0x00, 0xA0} // CTAP2_OK, empty map
	}
	return []byte{0x01} // CTAP1_ERR_INVALID_COMMAND
}

// A daemon serves each accepted socket with ServeConn; here a pipe stands in
// for the socket.
func Example() {
	srv := ctaphid.NewServer(getInfo{}, ctaphid.Config{Version: [3]byte{1, 0, 0}})
	daemonEnd, clientEnd := net.Pipe()
	defer clientEnd.Close()
	go srv.ServeConn(context.Background(), daemonEnd)

	c := ctaphid.NewClient(clientEnd)
	info, err := c.Init(context.Background())
	if err != nil {
		panic(err)
	}
	fmt.Printf("protocol %d, capabilities %#02x\n", info.Protocol, info.Capabilities)

	cmd, resp, err := c.Call(context.Background(), ctaphid.CmdCBOR, []byte{0x04})
	fmt.Printf("cmd %#x, response % x, err %v\n", cmd, resp, err)

	_, _, err = c.Call(context.Background(), 0xC5, nil)
	fmt.Println(err)
	// Output:
	// protocol 2, capabilities 0x0d
	// cmd 0x90, response 00 a0, err <nil>
	// ctaphid: command 0xc5: device answered ERR_INVALID_CMD (0x01)
}
