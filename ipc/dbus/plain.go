package dbusapi

import "github.com/godbus/dbus/v5"

// Plain turns an a{sv} reply (GetStatus, GetCapabilities, ListCredentials
// entries) into plain Go values that encoding/json can write: variants are
// unwrapped at every depth, object paths and signatures become strings.
// Clients of the API (authctl, the native-messaging host) share it.
func Plain(m map[string]dbus.Variant) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = plainValue(v.Value())
	}
	return out
}

func plainValue(v any) any {
	switch x := v.(type) {
	case dbus.Variant:
		return plainValue(x.Value())
	case map[string]dbus.Variant:
		return Plain(x)
	case []dbus.Variant:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = plainValue(e.Value())
		}
		return out
	case []map[string]dbus.Variant:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = Plain(e)
		}
		return out
	case dbus.ObjectPath:
		return string(x)
	case dbus.Signature:
		return x.String()
	}
	return v
}
