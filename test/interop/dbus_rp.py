#!/usr/bin/python3
"""An independent relying party (python-fido2's Fido2Server) registering and
signing in through authd's D-Bus platform API (org.authd.Authenticator1),
with dbus-python as the client. Usage: dbus_rp.py BUS_ADDRESS"""
import base64
import json
import sys
import time

import dbus
from fido2.client import ClientData
from fido2.ctap2 import AttestationObject, AuthenticatorData
from fido2.server import Fido2Server
from fido2.webauthn import PublicKeyCredentialRpEntity


def b64(b):
    return base64.urlsafe_b64encode(bytes(b)).rstrip(b"=").decode()


def unb64(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def main(addr):
    bus = dbus.bus.BusConnection(addr)
    for _ in range(100):  # authd may still be starting
        if bus.name_has_owner("org.authd.Authenticator1"):
            break
        time.sleep(0.05)
    api = dbus.Interface(bus.get_object("org.authd.Authenticator1", "/org/authd/Authenticator1"), "org.authd.Authenticator1")
    origin = "https://example.com"
    server = Fido2Server(PublicKeyCredentialRpEntity("example.com", "Example RP"))
    user = {"id": b"python-user", "name": "dave@example.com", "displayName": "Dave"}

    options, state = server.register_begin(user, resident_key=True, user_verification="discouraged")
    pk = options["publicKey"]
    create = {
        "rp": {"id": pk.rp.id, "name": pk.rp.name},
        "user": {"id": b64(pk.user.id), "name": pk.user.name, "displayName": pk.user.display_name},
        "challenge": b64(pk.challenge),
        "pubKeyCredParams": [{"type": "public-key", "alg": p.alg} for p in pk.pub_key_cred_params],
        "authenticatorSelection": {"residentKey": "required", "userVerification": "discouraged"},
        "attestation": "direct",
    }
    reg = json.loads(api.MakeCredential(origin, json.dumps(create), dbus.Dictionary({}, signature="sv")))
    assert reg["type"] == "public-key" and reg["authenticatorAttachment"] == "platform", reg
    auth_data = server.register_complete(
        state, ClientData(unb64(reg["response"]["clientDataJSON"])), AttestationObject(unb64(reg["response"]["attestationObject"]))
    )
    print("OK registration verified by Fido2Server:", b64(auth_data.credential_data.credential_id)[:16])
    creds = [auth_data.credential_data]

    for discoverable in (False, True):
        req, state = server.authenticate_begin(creds, user_verification="discouraged")
        rk = req["publicKey"]
        get = {"challenge": b64(rk.challenge), "rpId": rk.rp_id, "userVerification": "discouraged"}
        if not discoverable:
            get["allowCredentials"] = [{"type": "public-key", "id": b64(c.id)} for c in rk.allow_credentials]
        a = json.loads(api.GetAssertion(origin, json.dumps(get), dbus.Dictionary({}, signature="sv")))
        server.authenticate_complete(
            state, creds, unb64(a["rawId"]), ClientData(unb64(a["response"]["clientDataJSON"])),
            AuthenticatorData(unb64(a["response"]["authenticatorData"])), unb64(a["response"]["signature"]),
        )
        if discoverable:
            assert unb64(a["response"]["userHandle"]) == b"python-user", a["response"]
        print("OK assertion verified by Fido2Server (discoverable=%s)" % discoverable)

    # Errors arrive as org.authd.Error.<DOMException name>.
    for origin_, body, want in (
        ("https://example.org", json.dumps(get), "org.authd.Error.SecurityError"),
        ("https://com", json.dumps({"challenge": b64(b"x" * 16), "rpId": "com"}), "org.authd.Error.SecurityError"),
        ("https://example.com", "[]", "org.authd.Error.TypeError"),
    ):
        try:
            api.GetAssertion(origin_, body, dbus.Dictionary({}, signature="sv"))
        except dbus.DBusException as e:
            assert e.get_dbus_name() == want, (origin_, e.get_dbus_name())
            print("OK", want, "for", origin_)
        else:
            raise AssertionError("no error for " + origin_)
    print("ALL OK")


if __name__ == "__main__":
    main(sys.argv[1])
