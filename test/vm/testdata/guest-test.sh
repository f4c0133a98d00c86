#!/bin/sh
# The guest side of test/vm: authd on /dev/uhid, libfido2's own tools over
# the kernel's hidraw path. Prints PASS/FAIL lines for the host test.
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1${2:+: $2}"; }
check() { # check NAME CMD...: PASS when CMD exits 0
	name=$1; shift
	if "$@" > /tmp/out.$name 2>&1; then pass "$name"; else fail "$name" "exit $?: $(tail -n 3 /tmp/out.$name | tr '\n' ' ')"; fi
}
b64() { head -c "$1" /dev/urandom | base64 | tr -d '\n'; }
RP=vm.authd.test

export HOME=/root XDG_RUNTIME_DIR=/run/user/0
mkdir -p -m 0700 /root/state /run/user/0

start_authd() {
	authd --state-dir /root/state --uhid on --tpm none --fingerprint none --dbus none \
		--presence command:/presence.sh --log-level debug >> /tmp/authd.log 2>&1 &
	AUTHD=$!
	i=0
	while [ -z "$(ls /dev/hidraw* 2>/dev/null)" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
	DEV=$(ls /dev/hidraw* 2>/dev/null | head -n 1)
}

# Without authd there is no FIDO device.
if [ -n "$(fido2-token -L 2>/dev/null)" ]; then fail no-device-before-authd; else pass no-device-before-authd; fi

start_authd
if [ -n "$DEV" ]; then pass device-created; else fail device-created "no /dev/hidraw* after 10 s"; sed 's/^/authd: /' /tmp/authd.log; exit 0; fi
echo "INFO: device $DEV"

# fido2-token -L lists it (it exits 0 even when it finds nothing: check the output).
fido2-token -L > /tmp/list 2>&1
if grep -q "^$DEV: vendor=0x1209, product=0x0001" /tmp/list; then pass token-list; else fail token-list "$(cat /tmp/list)"; fi

# fido2-token -I shows authd's getInfo.
check token-info fido2-token -I "$DEV"
for want in "version strings: .*FIDO_2_1" "aaguid: 423d550cfabc48058865a5da23c97180" "options: .*rk" "caps: .*cbor"; do
	grep -q "$want" /tmp/out.token-info || fail "token-info-content" "missing /$want/"
done
grep -q "aaguid: 423d550cfabc48058865a5da23c97180" /tmp/out.token-info && pass token-info-content
cat /tmp/out.token-info

# makeCredential (discoverable, ES256), verified by fido2-cred -V.
CDH=$(b64 32)
printf '%s\n%s\nalice\n%s\n' "$CDH" "$RP" "$(b64 16)" > /tmp/cred.in
check cred-make fido2-cred -M -r -i /tmp/cred.in -o /tmp/cred "$DEV" es256
check cred-verify fido2-cred -V -i /tmp/cred -o /tmp/pub es256
CRED_ID=$(sed -n 5p /tmp/cred)

# An EdDSA credential too.
printf '%s\n%s\nbob\n%s\n' "$(b64 32)" "$RP" "$(b64 16)" > /tmp/cred2.in
check cred-make-eddsa fido2-cred -M -i /tmp/cred2.in -o /tmp/cred2 "$DEV" eddsa
check cred-verify-eddsa fido2-cred -V -i /tmp/cred2 -o /tmp/pub2 eddsa

# getAssertion with the credential ID, verified with the public key.
printf '%s\n%s\n%s\n' "$(b64 32)" "$RP" "$CRED_ID" > /tmp/assert.in
check assert-get fido2-assert -G -p -i /tmp/assert.in -o /tmp/assert "$DEV"
check assert-verify fido2-assert -V -p -i /tmp/assert /tmp/pub es256
# The same assertion does not verify under another key: the check can fail.
if fido2-assert -V -p -i /tmp/assert /tmp/pub2 eddsa > /dev/null 2>&1; then fail assert-verify-wrong-key "verified under the wrong key"; else pass assert-verify-wrong-key; fi

# Discoverable sign-in: no credential ID, authd finds alice's passkey.
printf '%s\n%s\n' "$(b64 32)" "$RP" > /tmp/assert-rk.in
check assert-get-discoverable fido2-assert -G -r -p -i /tmp/assert-rk.in -o /tmp/assert-rk "$DEV"
check assert-verify-discoverable fido2-assert -V -p -i /tmp/assert-rk /tmp/pub es256

# Another RP has no credential: a clean error, and authd keeps serving.
printf '%s\nother.example\n' "$(b64 32)" > /tmp/assert-none.in
if fido2-assert -G -r -i /tmp/assert-none.in -o /tmp/assert-none "$DEV" > /tmp/out.none 2>&1; then fail assert-no-credential "succeeded"; else pass assert-no-credential; fi
grep -qi "no credentials\|FIDO_ERR_NO_CREDENTIALS\|0x2e" /tmp/out.none || echo "INFO: no-credential output: $(cat /tmp/out.none)"

# OpenSSH: security-key SSH keys made by authd sign, and the signatures
# verify (ssh-keygen reaches the device through ssh-sk-helper and libfido2).
echo hello from the vm > /tmp/msg
for kt in ecdsa-sk ed25519-sk; do
	opts="-O application=ssh:vm-$kt"
	[ $kt = ed25519-sk ] && opts="$opts -O resident"
	check ssh-keygen-$kt ssh-keygen -q -t $kt -f /tmp/id_$kt -N "" -C vm $opts
	check ssh-sign-$kt ssh-keygen -Y sign -f /tmp/id_$kt -n file /tmp/msg
	echo "vm $(cut -d' ' -f1,2 /tmp/id_$kt.pub)" > /tmp/allowed_$kt
	check ssh-verify-$kt sh -c "ssh-keygen -Y verify -f /tmp/allowed_$kt -I vm -n file -s /tmp/msg.sig < /tmp/msg"
	echo tampered >> /tmp/msg
	if ssh-keygen -Y verify -f /tmp/allowed_$kt -I vm -n file -s /tmp/msg.sig < /tmp/msg > /dev/null 2>&1; then fail ssh-verify-tampered-$kt; else pass ssh-verify-tampered-$kt; fi
	echo hello from the vm > /tmp/msg
	rm -f /tmp/msg.sig
done

# Caller attribution: the presence prompts named the programs holding the hidraw node.
cat /tmp/presence.log
if grep -q "op=makeCredential rp=$RP requester=fido2-cred" /tmp/presence.log; then pass requester-cred; else fail requester-cred; fi
if grep -q "op=getAssertion rp=$RP requester=fido2-assert" /tmp/presence.log; then pass requester-assert; else fail requester-assert; fi

# Shutdown destroys the device; a restarted authd recreates it and the
# passkey still signs.
kill -TERM $AUTHD
wait $AUTHD
st=$?
if [ $st -eq 0 ]; then pass authd-exit; else fail authd-exit "status $st"; fi
if [ -z "$(ls /dev/hidraw* 2>/dev/null)" ]; then pass device-destroyed; else fail device-destroyed "$(ls /dev/hidraw*)"; fi
start_authd
if [ -n "$DEV" ]; then pass device-recreated; else fail device-recreated; fi
check assert-after-restart fido2-assert -G -p -i /tmp/assert.in -o /tmp/assert2 "$DEV"
check assert-verify-after-restart fido2-assert -V -p -i /tmp/assert2 /tmp/pub es256
kill -TERM $AUTHD
wait $AUTHD

grep -E "level=(WARN|ERROR)" /tmp/authd.log | sed 's/^/authd: /'
echo "GUEST: finished"
