package nmhost

import (
	"testing"

	"github.com/authd/authd/ipc"
)

// TestUseAnotherDevice: org.authd.Error.UseAnotherDevice reaches the
// extension as "UseAnotherDevice", which it handles like NotReachable.
func TestUseAnotherDevice(t *testing.T) {
	e := newEnv(t, true, nil)
	for i, op := range []struct{ method, typ string }{{"MakeCredential", "create"}, {"GetAssertion", "get"}} {
		e.f.SetErr(op.method, ipc.Errorf(ipc.UseAnotherDevice, "the user chose another device"))
		e.req(map[string]any{"id": i, "type": op.typ, "origin": "https://example.com", "options": map[string]any{}})
		if r := e.next(); r.OK || errName(r) != ipc.UseAnotherDevice || r.Error.Message != "the user chose another device" {
			t.Fatalf("%s: %s", op.typ, mustJSON(r))
		}
	}
}
