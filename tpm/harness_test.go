package tpm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// swtpm is a software TPM run as a foreground child process (a daemonised
// swtpm can linger as a zombie here), with its state in a test directory.
type swtpm struct {
	tb    testing.TB
	state string // --tpmstate dir
	tcp   bool   // --server type=tcp instead of unixio
	sock  string // unixio data socket; the control socket is sock+".ctrl"
	port  int    // tcp data port; control is port+1
	cmd   *exec.Cmd
	done  chan error
}

// requireSwtpm skips the test when swtpm is not installed, or fails it under
// CI, where a skipped TPM suite would hide a broken setup.
func requireSwtpm(tb testing.TB) {
	tb.Helper()
	if _, err := exec.LookPath("swtpm"); err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("swtpm not installed (apt-get install swtpm swtpm-tools): %v", err)
		}
		tb.Skip("swtpm not installed (apt-get install swtpm swtpm-tools)")
	}
}

// startSwtpm starts a swtpm on a new state directory. At the end of the test
// it asserts that no transient object or session is left loaded (every
// Device must have been closed by then), then shuts swtpm down.
func startSwtpm(tb testing.TB) *swtpm {
	return startSwtpmState(tb, tb.TempDir(), false)
}

func startSwtpmState(tb testing.TB, state string, tcp bool) *swtpm {
	tb.Helper()
	requireSwtpm(tb)
	// Unix socket paths are limited to 108 bytes; t.TempDir() can be longer.
	sockDir, err := os.MkdirTemp("", "swtpm")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(sockDir) })
	s := &swtpm{tb: tb, state: state, tcp: tcp, sock: filepath.Join(sockDir, "s")}
	if tcp {
		s.port = freePortPair(tb)
	}
	s.start()
	tb.Cleanup(func() {
		if s.cmd == nil {
			return
		}
		assertNoHandles(tb, s)
		s.stop()
	})
	return s
}

// freePortPair finds two consecutive free TCP ports on 127.0.0.1.
func freePortPair(tb testing.TB) int {
	for range 50 {
		l1, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		p := l1.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+1))
		l1.Close()
		if err == nil {
			l2.Close()
			return p
		}
	}
	tb.Fatal("no free TCP port pair")
	return 0
}

func (s *swtpm) spec() string {
	if s.tcp {
		return fmt.Sprintf("tcp:127.0.0.1:%d", s.port)
	}
	return "swtpm:" + s.sock
}

// raw returns a transport to the running swtpm, closed at the end of the test.
func (s *swtpm) raw() transport.TPMCloser {
	s.tb.Helper()
	t, err := OpenTransport(s.spec())
	if err != nil {
		s.tb.Fatal(err)
	}
	s.tb.Cleanup(func() { t.Close() })
	return t
}

func (s *swtpm) start() {
	s.tb.Helper()
	args := []string{"socket", "--tpm2", "--tpmstate", "dir=" + s.state,
		"--flags", "not-need-init,startup-clear",
		"--log", "file=" + filepath.Join(s.state, "swtpm.log") + ",level=1"}
	if s.tcp {
		args = append(args,
			"--server", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", s.port),
			"--ctrl", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", s.port+1))
	} else {
		args = append(args,
			"--server", "type=unixio,path="+s.sock,
			"--ctrl", "type=unixio,path="+s.sock+".ctrl")
	}
	cmd := exec.Command("swtpm", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		s.tb.Fatalf("start swtpm: %v", err)
	}
	s.cmd, s.done = cmd, make(chan error, 1)
	go func() { s.done <- cmd.Wait() }()
	network, addr := "unix", s.sock
	if s.tcp {
		network, addr = "tcp", fmt.Sprintf("127.0.0.1:%d", s.port)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial(network, addr)
		if err == nil {
			c.Close()
			return
		}
		select {
		case werr := <-s.done:
			s.cmd = nil
			s.tb.Fatalf("swtpm exited: %v: %s", werr, out.String())
		default:
		}
		if time.Now().After(deadline) {
			s.tb.Fatalf("swtpm did not listen on %s: %v: %s", addr, err, out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stop sends TPM2_Shutdown(CLEAR) (unixio only), so that the restart is
// orderly and adds nothing to the DA counter, then asks swtpm to exit on its control socket
// (CMD_SHUTDOWN) and waits for it.
func (s *swtpm) stop() {
	s.tb.Helper()
	if s.cmd == nil {
		return
	}
	// swtpm serves one data connection at a time and a Device keeps its TCP
	// connection open, so over TCP the stop is not orderly (harmless here:
	// only DA-protected use would add to the DA counter).
	if !s.tcp {
		if t, err := OpenTransport(s.spec()); err == nil {
			if _, err := (tpm2.Shutdown{ShutdownType: tpm2.TPMSUClear}).Execute(t); err != nil {
				s.tb.Errorf("TPM2_Shutdown: %v", err)
			}
			t.Close()
		}
	}
	network, addr := "unix", s.sock+".ctrl"
	if s.tcp {
		network, addr = "tcp", fmt.Sprintf("127.0.0.1:%d", s.port+1)
	}
	if c, err := net.Dial(network, addr); err == nil {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		const cmdShutdown = 3
		c.Write(binary.BigEndian.AppendUint32(nil, cmdShutdown))
		var rsp [4]byte
		c.Read(rsp[:])
		c.Close()
	}
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

func (s *swtpm) restart() {
	s.tb.Helper()
	s.stop()
	s.start()
}

// assertNoHandles fails the test if the TPM has any transient object or
// loaded session: every handle authd loads must have been flushed.
func assertNoHandles(tb testing.TB, s *swtpm) {
	tb.Helper()
	t, err := OpenTransport(s.spec())
	if err != nil {
		tb.Errorf("leak check: %v", err)
		return
	}
	defer t.Close()
	for _, ht := range []tpm2.TPMHT{tpm2.TPMHTTransient, tpm2.TPMHTHMACSession, tpm2.TPMHTPolicySession} {
		hs, err := handles(t, ht)
		if err != nil {
			tb.Errorf("leak check: %v", err)
			return
		}
		if len(hs) != 0 {
			tb.Errorf("leaked TPM handles (type %#x): %#x", uint32(ht), hs)
		}
	}
}

// openDevice opens a Device on s and closes it at the end of the test, before
// the leak check.
func openDevice(tb testing.TB, s *swtpm) *Device {
	tb.Helper()
	d, err := Open(s.spec())
	if err != nil {
		tb.Fatalf("Open(%s): %v", s.spec(), err)
	}
	tb.Cleanup(func() {
		if err := d.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return d
}

// lockoutCmd sends a lockout-hierarchy command with the empty lockout
// password; go-tpm v0.9.8 has no structs for TPM2_DictionaryAttackParameters
// (Part 3, 25.3) or TPM2_DictionaryAttackLockReset (25.2).
func lockoutCmd(t transport.TPM, cc tpm2.TPMCC, params []byte) error {
	var b bytes.Buffer
	binary.Write(&b, binary.BigEndian, uint16(tpm2.TPMSTSessions))
	binary.Write(&b, binary.BigEndian, uint32(0)) // size, patched below
	binary.Write(&b, binary.BigEndian, uint32(cc))
	binary.Write(&b, binary.BigEndian, uint32(tpm2.TPMRHLockout))
	binary.Write(&b, binary.BigEndian, uint32(9)) // authorizationSize
	binary.Write(&b, binary.BigEndian, uint32(tpm2.TPMRSPW))
	binary.Write(&b, binary.BigEndian, uint16(0)) // nonce
	b.WriteByte(0x01)                             // continueSession
	binary.Write(&b, binary.BigEndian, uint16(0)) // empty password
	b.Write(params)
	cmd := b.Bytes()
	binary.BigEndian.PutUint32(cmd[2:6], uint32(len(cmd)))
	rsp, err := t.Send(cmd)
	if err != nil {
		return err
	}
	if len(rsp) < hdrSize {
		return errors.New("short response")
	}
	if rc := tpm2.TPMRC(binary.BigEndian.Uint32(rsp[6:10])); rc != tpm2.TPMRCSuccess {
		return rc
	}
	return nil
}

func setDAParameters(tb testing.TB, t transport.TPM, maxTries, recoveryTime, lockoutRecovery uint32) {
	tb.Helper()
	p := binary.BigEndian.AppendUint32(nil, maxTries)
	p = binary.BigEndian.AppendUint32(p, recoveryTime)
	p = binary.BigEndian.AppendUint32(p, lockoutRecovery)
	if err := lockoutCmd(t, tpm2.TPMCCDictionaryAttackParameters, p); err != nil {
		tb.Fatalf("TPM2_DictionaryAttackParameters: %v", err)
	}
}

func resetDALockout(tb testing.TB, t transport.TPM) {
	tb.Helper()
	if err := lockoutCmd(t, tpm2.TPMCCDictionaryAttackLockReset, nil); err != nil {
		tb.Fatalf("TPM2_DictionaryAttackLockReset: %v", err)
	}
}

// assertDeviceHandles checks that the TPM holds exactly what an idle Device
// keeps: its SRK, its cached signing keys if any, and its salted session.
func assertDeviceHandles(tb testing.TB, s *swtpm, d *Device) {
	tb.Helper()
	d.mu.Lock()
	var wantObj, wantSess []tpm2.TPMHandle
	if d.ready {
		wantObj = append(wantObj, d.srk.Handle)
		for _, c := range d.cached {
			wantObj = append(wantObj, c.h.Handle)
		}
		wantSess = append(wantSess, d.sess.Handle())
	}
	d.mu.Unlock()
	t, err := OpenTransport(s.spec())
	if err != nil {
		tb.Fatal(err)
	}
	defer t.Close()
	objs, err := handles(t, tpm2.TPMHTTransient)
	if err != nil {
		tb.Fatal(err)
	}
	sess, err := handles(t, tpm2.TPMHTHMACSession)
	if err != nil {
		tb.Fatal(err)
	}
	if !sameHandles(objs, wantObj) || !sameHandles(sess, wantSess) {
		tb.Errorf("TPM holds objects %#x and sessions %#x; the Device keeps %#x and %#x", objs, sess, wantObj, wantSess)
	}
}

func sameHandles(a, b []tpm2.TPMHandle) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[tpm2.TPMHandle]bool{}
	for _, h := range a {
		seen[h] = true
	}
	for _, h := range b {
		if !seen[h] {
			return false
		}
	}
	return true
}
