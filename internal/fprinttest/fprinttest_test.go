package fprinttest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
)

// TestHarness starts the daemons, claims the device on one connection and
// checks that the virtual device's socket appears and takes commands.
func TestHarness(t *testing.T) {
	start := time.Now()
	e := Start(t)
	t.Logf("started in %v, bus %s", time.Since(start), e.Addr)

	c := e.Conn(t)
	var dev dbus.ObjectPath
	if err := c.Object(FprintName, "/net/reactivated/Fprint/Manager").
		Call("net.reactivated.Fprint.Manager.GetDefaultDevice", 0).Store(&dev); err != nil {
		t.Fatal(err)
	}
	obj := c.Object(FprintName, dev)
	if err := obj.Call("net.reactivated.Fprint.Device.Claim", 0, "").Err; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.WaitSocket(ctx); err != nil {
		t.Fatal(err)
	}
	out := e.MustSend(t, "LIST")
	t.Logf("LIST -> %q", out)
	if err := obj.Call("net.reactivated.Fprint.Device.Release", 0).Err; err != nil {
		t.Fatal(err)
	}
	_, err := os.Stat(e.Socket)
	t.Logf("socket after Release: %v", err)
}
