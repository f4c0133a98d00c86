#!/usr/bin/env bash
# scripts/test.sh: the one test command for authd (also run by .ci/run).
#
#   scripts/test.sh            # vet, gofmt, go test -race, fuzz smoke run
#
# Environment:
#   CI=1            missing tools are an error (interop tests fail instead of skip)
#   FUZZTIME=10s    fuzz time per Fuzz target
#   FUZZ_BUDGET=60  rough upper bound in seconds for the whole fuzz smoke run
#   SKIP_FUZZ=1     skip the fuzz smoke run
#   GOTEST_FLAGS    extra flags for `go test -race` (e.g. "-run Interop -v")
#   AUTHD_BROWSER_E2E=0  skip the browser end-to-end tests (test/browser:
#                   Chromium with playwright-core, Firefox over Marionette); they
#                   run when chromium and node/npm are installed
#
# As root it installs the Debian packages the interop tests need
# (python3-fido2, fido2-tools, swtpm, fprintd, chromium, firefox-esr, qemu, ...), running
# `apt-get update` only when something is missing.
set -euo pipefail

cd "$(dirname "$0")/.."

PACKAGES=(python3-fido2 fido2-tools libfido2-dev pkg-config gcc swtpm swtpm-tools pinentry-tty fprintd python3-dbusmock dbus-daemon chromium firefox-esr qemu-system-x86 busybox-static openssh-client)

log() { printf '==> %s\n' "$*"; }

pkg_installed() {
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

ensure_packages() {
	local missing=() p
	if ! command -v dpkg-query >/dev/null 2>&1; then
		# Not Debian: check the tools themselves.
		/usr/bin/python3 -c 'import fido2' >/dev/null 2>&1 || missing+=(python3-fido2)
		pkg-config --exists libfido2 2>/dev/null || missing+=(libfido2-dev)
		command -v gcc >/dev/null 2>&1 || missing+=(gcc)
		command -v swtpm >/dev/null 2>&1 || missing+=(swtpm)
		command -v dbus-daemon >/dev/null 2>&1 || missing+=(dbus-daemon)
		/usr/bin/python3 -c 'import dbusmock' >/dev/null 2>&1 || missing+=(python3-dbusmock)
		[[ -x /usr/libexec/fprintd || -x /usr/lib/fprintd/fprintd ]] || missing+=(fprintd)
		if ((${#missing[@]})); then
			echo "missing: ${missing[*]} (install the equivalents for your distribution)" >&2
			if [[ -n "${CI:-}" ]]; then exit 1; fi
		fi
		return 0
	fi
	for p in "${PACKAGES[@]}"; do
		pkg_installed "$p" || missing+=("$p")
	done
	((${#missing[@]})) || return 0
	if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
		log "installing: ${missing[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends "${missing[@]}"
	else
		echo "missing Debian packages: ${missing[*]}" >&2
		echo "install them with: sudo apt-get install ${missing[*]}" >&2
		if [[ -n "${CI:-}" ]]; then exit 1; fi
		echo "(continuing: interop tests that need them will be skipped)" >&2
	fi
}

declare -a SUMMARY=()
FAILED=0

# step NAME CMD...: runs CMD, records PASS/FAIL and the duration, never exits.
step() {
	local name=$1 start rc
	shift
	log "$name"
	start=$(date +%s)
	set +e
	"$@"
	rc=$?
	set -e
	local dur=$(($(date +%s) - start))
	if ((rc == 0)); then
		SUMMARY+=("PASS  ${name} (${dur}s)")
	else
		SUMMARY+=("FAIL  ${name} (${dur}s, exit ${rc})")
		FAILED=1
	fi
	return 0
}

check_gofmt() {
	local out
	out=$(gofmt -l . 2>&1) || { echo "$out"; return 1; }
	if [[ -n "$out" ]]; then
		echo "gofmt -l lists files that need formatting:"
		echo "$out"
		return 1
	fi
}

# Fuzz targets: "dir FuzzName" lines for every func Fuzz* in *_test.go.
fuzz_targets() {
	grep -rEo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*\(' . 2>/dev/null |
		grep -v '/vendor/' |
		sed -E 's#^\./##; s#^(.*)/[^/]*_test\.go:func (Fuzz[A-Za-z0-9_]*)\($#\1 \2#; s#^[^/ ]*_test\.go:func (Fuzz[A-Za-z0-9_]*)\($#. \1#' |
		sort -u
}

# corpus_files DIR NAME: the failing-input files go test -fuzz wrote so far.
corpus_files() {
	ls -1 "$1/testdata/fuzz/$2" 2>/dev/null | sort || true
}

fuzz_smoke() {
	local targets n per budget rc=0 dir name before after out status
	mapfile -t targets < <(fuzz_targets)
	n=${#targets[@]}
	if ((n == 0)); then
		echo "no Fuzz targets found"
		return 0
	fi
	per=${FUZZTIME:-10s}
	budget=${FUZZ_BUDGET:-60}
	# Keep the total modest: shrink the per-target time when there are many.
	if [[ -z "${FUZZTIME:-}" ]] && ((n * 10 > budget)); then
		per="$((budget / n > 3 ? budget / n : 3))s"
	fi
	echo "fuzzing ${n} target(s), ${per} each"
	for t in "${targets[@]}"; do
		dir=${t% *}
		name=${t#* }
		echo "--- ${name} (./${dir})"
		before=$(corpus_files "$dir" "$name")
		set +e
		out=$(go test -run='^$' -fuzz="^${name}\$" -fuzztime="${per}" "./${dir}" 2>&1)
		status=$?
		set -e
		echo "$out"
		((status == 0)) && continue
		after=$(corpus_files "$dir" "$name")
		# Go 1.26's fuzz coordinator can report "context deadline exceeded"
		# when -fuzztime expires mid-exec (golang/go#75804, fixed in 1.27).
		# That is no finding unless a failing input was written.
		if [[ "$before" == "$after" ]] && grep -q 'context deadline exceeded' <<<"$out" &&
			! grep -qE 'Failing input written|panic:' <<<"$out"; then
			echo "FLAKE fuzz ${name} in ./${dir}: fuzztime deadline race (golang/go#75804), no failing input; ignored"
			continue
		fi
		echo "FAIL fuzz ${name} in ./${dir}"
		rc=1
	done
	return $rc
}

main() {
	ensure_packages
	command -v go >/dev/null 2>&1 || { echo "go not found on PATH" >&2; exit 1; }
	log "$(go version)"

	# The Chromium e2e test (test/browser) needs playwright-core from the lock file.
	if [[ "${AUTHD_BROWSER_E2E:-}" != 0 ]] && command -v chromium >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
		step "npm ci (test/browser)" npm ci --prefix test/browser --no-audit --no-fund
		export AUTHD_BROWSER_E2E=1
	elif [[ -n "${CI:-}" && "${AUTHD_BROWSER_E2E:-}" != 0 ]]; then
		echo "the browser e2e test needs chromium and node/npm" >&2
		exit 1
	fi
	step "go vet ./..." go vet ./...
	step "gofmt -l ." check_gofmt
	# shellcheck disable=SC2086 # GOTEST_FLAGS is a list of flags
	step "go test -race ./..." go test -race -timeout 20m -count=1 ${GOTEST_FLAGS:-} ./...
	if [[ -z "${SKIP_FUZZ:-}" ]]; then
		step "fuzz smoke run" fuzz_smoke
	fi

	echo
	echo "================ summary ================"
	printf '%s\n' "${SUMMARY[@]}"
	if ((FAILED)); then
		echo "RESULT: FAIL"
		exit 1
	fi
	echo "RESULT: PASS"
}

main "$@"
