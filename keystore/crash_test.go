package keystore

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// runCrashChild runs TestHelperCrashChild in a new process, which opens the
// store under root, prints n counter values and kills itself with SIGKILL.
func runCrashChild(t *testing.T, root string, id []byte, n int) (string, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(),
		"KEYSTORE_CRASH_ROOT="+root,
		"KEYSTORE_CRASH_ID="+hex.EncodeToString(id),
		"KEYSTORE_CRASH_N="+strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return "", fmt.Errorf("child was not killed: %v (output %q)", err, out)
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		return "", fmt.Errorf("child did not die of SIGKILL: %v (output %q)", err, out)
	}
	return string(out), nil
}

func crashChild(root, idHex, nStr string) {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		os.Exit(3)
	}
	id, err := hex.DecodeString(idHex)
	if err != nil {
		fail(err)
	}
	n, err := strconv.Atoi(nStr)
	if err != nil {
		fail(err)
	}
	sealer, err := OpenSoftwareSealer(filepath.Join(root, "master.key"))
	if err != nil {
		fail(err)
	}
	s, err := Open(filepath.Join(root, "state"), sealer, SoftwareKeys{}, Options{CounterReserve: 8})
	if err != nil {
		fail(err)
	}
	for i := 0; i < n; i++ {
		v, err := s.NextCounter(id)
		if err != nil {
			fail(err)
		}
		// The value counts as handed out once it is written.
		if _, err := fmt.Printf("%d\n", v); err != nil {
			fail(err)
		}
	}
	os.Stdout.Sync()
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}
