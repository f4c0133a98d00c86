// Package interop runs authd as a separate process and drives it over its
// CTAPHID Unix socket with two independent FIDO2 client stacks:
// python-fido2 0.9.1 (fido2_client.py, run with /usr/bin/python3) and
// libfido2 (fido2_sockdev.c, built with gcc). Only the tests in this package
// use these tools; they skip when a tool is missing, unless CI is set, in
// which case they fail and point to scripts/test.sh, which installs them.
package interop
