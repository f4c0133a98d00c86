package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strings"

	"github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"

	"github.com/authd/authd/packaging"
)

// uhidEnv is where the uhid door's checks look; tests point it elsewhere.
type uhidEnv struct {
	dev         string // /dev/uhid
	rule        string // the udev rule authctl installs
	modulesLoad string
	// access is access(2) for the caller: it honours the uaccess ACLs
	// logind puts on device nodes, which a mode check would miss.
	access func(path string, mode uint32) error
	euid   func() int
	// run runs a system command (modprobe, udevadm).
	run func(name string, args ...string) ([]byte, error)
}

var defaultUHIDEnv = uhidEnv{
	dev:         "/dev/uhid",
	rule:        packaging.UdevRulePath,
	modulesLoad: packaging.ModulesLoadPath,
	access:      unix.Access,
	euid:        os.Geteuid,
	run:         func(name string, args ...string) ([]byte, error) { return exec.Command(name, args...).CombinedOutput() },
}

// doctorUHID checks the /dev/uhid door step by step: the kernel device, the
// permission to open it, authd's virtual device and the hidraw node that
// browsers open. status is authd's GetStatus, nil when authd is unreachable.
func (c *cli) doctorUHID(report reporter, status map[string]string, env uhidEnv) {
	const what = "uhid door"
	if node := status["uhid"]; node != "" {
		report("ok", what, "authd's virtual FIDO device is %s (browsers, libfido2, ssh and systemd-cryptenroll see it as a security key)", node)
		if err := env.access(node, unix.R_OK|unix.W_OK); err != nil {
			report("FAIL", "hidraw access", "you cannot open %s (%v): systemd tags FIDO devices for the user at the seat "+
				"(60-fido-id.rules, 70-uaccess.rules); log in at the machine itself (remote and background sessions get no access), "+
				"or check `udevadm info %s` for ID_SECURITY_TOKEN=1", node, err, node)
		} else {
			report("ok", "hidraw access", "you can open %s", node)
		}
		return
	}
	note := status["uhid_note"]
	if status != nil && strings.Contains(note, "--uhid off") {
		report("info", what, "off (authd --uhid off): browsers reach authd through the extension only")
		return
	}
	if status != nil && strings.HasPrefix(note, "created") {
		report("warn", what, "the device was created but the kernel made no hidraw node yet: is the hid-generic module available (`modprobe hid-generic`)?")
		return
	}
	// authd has no device (or is unreachable): find the step that fails.
	_, statErr := os.Stat(env.dev)
	ruleInstalled := fileExists(env.rule)
	switch {
	case errors.Is(statErr, fs.ErrNotExist):
		report("warn", what, "%s does not exist: the uhid kernel module is not loaded. Run `sudo modprobe uhid`; "+
			"`sudo authctl install --uhid` also loads it at every boot", env.dev)
	case env.access(env.dev, unix.R_OK|unix.W_OK) != nil && ruleInstalled:
		report("warn", what, "%s is installed but you still cannot open %s: log out and in again (logind applies the access at login), "+
			"or run `sudo udevadm trigger --name-match=uhid`", env.rule, env.dev)
	case env.access(env.dev, unix.R_OK|unix.W_OK) != nil:
		report("warn", what, "you cannot open %s: run `sudo authctl install --uhid` (a udev rule that gives it to the user at the seat), "+
			"then restart authd", env.dev)
	case status == nil:
		report("info", what, "%s is usable; authd (not reachable now) creates its virtual FIDO device when it starts", env.dev)
	default:
		report("warn", what, "%s is usable now but authd has no virtual FIDO device (%s): restart authd (`systemctl --user restart authd`)",
			env.dev, orDefault(note, "no reason given"))
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// uhidStatus asks authd for its status, flattened; nil when unreachable.
func (c *cli) uhidStatus() map[string]string {
	if c.conn == nil {
		return nil
	}
	var st map[string]dbus.Variant
	if err := c.call("GetStatus").Store(&st); err != nil {
		return nil
	}
	lines := map[string]string{}
	flatten("", st, lines)
	return lines
}

// installUHID installs the udev rule and the modules-load file (root only),
// loads the module and applies the rule now, so the next authd start
// creates its device without a reboot.
func (c *cli) installUHID(env uhidEnv) int {
	if env.euid() != 0 {
		return c.fail("install --uhid", fmt.Errorf("writing %s needs root: run `sudo authctl install --uhid`", env.rule))
	}
	for _, f := range []struct{ path, text string }{
		{env.rule, packaging.UdevRule},
		{env.modulesLoad, packaging.ModulesLoad},
	} {
		if err := writeFile(f.path, []byte(f.text)); err != nil {
			return c.fail("install --uhid", err)
		}
		fmt.Fprintf(c.stdout, "wrote %s\n", f.path)
	}
	// Best effort: on a machine without udev or kmod the files still apply
	// at the next boot.
	for _, cmd := range [][]string{
		{"modprobe", "uhid"},
		{"udevadm", "control", "--reload"},
		{"udevadm", "trigger", "--name-match=uhid"},
	} {
		if out, err := env.run(cmd[0], cmd[1:]...); err != nil {
			fmt.Fprintf(c.stderr, "authctl: %s: %v %s\n", strings.Join(cmd, " "), err, strings.TrimSpace(string(out)))
		}
	}
	fmt.Fprint(c.stdout, `The user at the seat may now open /dev/uhid.
Next: restart authd as that user (systemctl --user restart authd)
Check with: authctl doctor
`)
	return exitOK
}
