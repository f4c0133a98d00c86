package dbusapi

import (
	"encoding/json"
	"testing"

	"github.com/godbus/dbus/v5"
)

func TestPlain(t *testing.T) {
	in := map[string]dbus.Variant{
		"s":    dbus.MakeVariant("x"),
		"n":    dbus.MakeVariant(int32(3)),
		"nest": dbus.MakeVariant(map[string]dbus.Variant{"b": dbus.MakeVariant(true)}),
		"av":   dbus.MakeVariant([]dbus.Variant{dbus.MakeVariant("a"), dbus.MakeVariant(dbus.MakeVariant(uint32(1)))}),
		"aa":   dbus.MakeVariant([]map[string]dbus.Variant{{"id": dbus.MakeVariant("c1")}}),
		"o":    dbus.MakeVariant(dbus.ObjectPath("/org/authd")),
		"g":    dbus.MakeVariant(dbus.SignatureOf("")),
	}
	b, err := json.Marshal(Plain(in))
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"aa":[{"id":"c1"}],"av":["a",1],"g":"s","n":3,"nest":{"b":true},"o":"/org/authd","s":"x"}`
	if string(b) != want {
		t.Errorf("Plain = %s\nwant    %s", b, want)
	}
}
