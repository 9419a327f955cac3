#!/usr/bin/env bash
# flowdrop offline installer: runs from an unpacked bundle made by `python3 dev.py wheelhouse`.
#
#   ./install.sh [--prefix /opt/flowdrop] [--no-systemd] [--root DIR]
#
# 1. verifies every file against SHA256SUMS and refuses (installing nothing) on any mismatch;
# 2. creates (or reuses) a virtual environment at the prefix and installs flowdrop and its
#    dependencies from the bundle's wheels only: pip never sees an index or a pip.conf;
# 3. unless --no-systemd: installs the units (flowdrop.service, flowdrop-prune.service/.timer),
#    sysusers and tmpfiles entries, the operator docs and the example config (an existing config
#    is never overwritten);
# 4. runs `flowdrop doctor` and says what to do next.
#
# Idempotent: a second run repairs or upgrades in place. Before upgrading a prefix that holds
# another bundle, the prefix is copied to <prefix>.previous (the rollback; docs/operations.md).
# --root DIR installs the systemd files below DIR instead of / (images, chroots, tests) and then
# runs no systemd command. PYTHON=/path/to/python3.X chooses the interpreter (default python3).
set -euo pipefail
umask 022

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PREFIX=/opt/flowdrop
SYSTEMD=1
ROOT=/
PYTHON="${PYTHON:-python3}"

say() { printf 'install: %s\n' "$*"; }
die() {
    printf 'install: error: %s\n' "$*" >&2
    exit 1
}
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"; }
usage_error() {
    printf 'install: usage_error: %s\n' "$*" >&2
    usage >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
    --prefix)
        [ $# -ge 2 ] || usage_error "--prefix needs a directory"
        PREFIX="$2"
        shift 2
        ;;
    --prefix=*)
        PREFIX="${1#--prefix=}"
        shift
        ;;
    --root)
        [ $# -ge 2 ] || usage_error "--root needs a directory"
        ROOT="$2"
        shift 2
        ;;
    --root=*)
        ROOT="${1#--root=}"
        shift
        ;;
    --no-systemd)
        SYSTEMD=0
        shift
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    *) usage_error "unknown argument: $1" ;;
    esac
done
[ -n "$PREFIX" ] || usage_error "--prefix is empty"
case "$PREFIX" in /*) ;; *) PREFIX="$(pwd)/$PREFIX" ;; esac
PREFIX="${PREFIX%/}"
case "$ROOT" in /*) ;; *) ROOT="$(pwd)/$ROOT" ;; esac
ROOT="${ROOT%/}"

# --- 1. the bundle is whole and untouched ------------------------------------------------------
cd "$HERE"
command -v sha256sum >/dev/null || die "sha256sum (coreutils) is required"
[ -f SHA256SUMS ] && [ -f BUNDLE.json ] || die "SHA256SUMS or BUNDLE.json is missing: not a complete flowdrop bundle"
say "verifying $(wc -l <SHA256SUMS) files against SHA256SUMS"
if ! sha256sum --check --strict --quiet SHA256SUMS >&2; then
    die "checksum mismatch (listed above): the bundle is damaged or was altered; nothing was installed. Copy the tarball again and compare it with its .sha256 file."
fi
listed="$(awk '{print $2}' SHA256SUMS)"
for wheel in wheels/*.whl; do
    printf '%s\n' "$listed" | grep -qxF "$wheel" ||
        die "$wheel is not listed in SHA256SUMS: refusing to install a wheel nobody vouched for; nothing was installed."
done

# --- 2. an interpreter this bundle was built for -------------------------------------------------
command -v "$PYTHON" >/dev/null || die "$PYTHON not found: install Python 3 or set PYTHON=/path/to/python3.X"
field() {
    "$PYTHON" -c 'import json, sys
value = json.load(open(sys.argv[1]))[sys.argv[2]]
print(",".join(value) if isinstance(value, list) else value)' "$HERE/BUNDLE.json" "$1"
}
VERSION="$(field version)"
EXTRAS="$(field extras)"
WANT_PY="$(field pythonVersion)"
WANT_PLATFORM="$(field platform)"
PY_INFO='import sys, sysconfig
print("%d.%d" % sys.version_info[:2], sysconfig.get_platform().replace("-", "_").replace(".", "_"))'
check_python() {
    local have
    have="$("$1" -c "$PY_INFO")"
    [ "$have" = "$WANT_PY $WANT_PLATFORM" ] ||
        die "this bundle is for Python $WANT_PY on $WANT_PLATFORM; $1 is Python ${have/ / on }. $2"
}
check_python "$PYTHON" "Set PYTHON=/usr/bin/python$WANT_PY, or build a bundle on a machine like this one."

if [ "$SYSTEMD" = 1 ] && [ "$ROOT" = "" ] && [ "$(id -u)" != 0 ]; then
    die "installing the systemd files needs root: run with sudo, or pass --no-systemd"
fi

# --- 3. the virtual environment -----------------------------------------------------------------
# Before anything is written: can this user create or change the prefix at all?
if [ -e "$PREFIX" ]; then
    [ -w "$PREFIX" ] || die "$PREFIX is not writable by $(id -un): run as root, or choose another --prefix; nothing was installed."
else
    parent="$(dirname "$PREFIX")"
    while [ ! -e "$parent" ]; do parent="$(dirname "$parent")"; done
    [ -w "$parent" ] || die "cannot create $PREFIX ($parent is not writable by $(id -un)): run as root, or choose another --prefix; nothing was installed."
fi

PREVIOUS=""
KEPT=""
if [ -x "$PREFIX/bin/python" ]; then
    check_python "$PREFIX/bin/python" "Install into a new --prefix (keep this one for rollback)."
    PREVIOUS="$("$PREFIX/bin/python" -c 'from importlib.metadata import version; print(version("flowdrop"))' 2>/dev/null || true)"
elif [ -e "$PREFIX" ] && [ -n "$(ls -A "$PREFIX" 2>/dev/null)" ]; then
    die "$PREFIX exists and is not a virtual environment: choose another --prefix; nothing was installed."
fi
if [ -n "$PREVIOUS" ]; then
    if cmp -s BUNDLE.json "$PREFIX/flowdrop-bundle.json"; then
        say "this bundle (flowdrop $VERSION) is already installed in $PREFIX: reinstalling in place"
    else
        say "keeping the previous installation (flowdrop $PREVIOUS) as $PREFIX.previous for rollback"
        rm -rf "$PREFIX.previous"
        cp -a "$PREFIX" "$PREFIX.previous"
        KEPT="$PREFIX.previous"
    fi
fi
if [ ! -x "$PREFIX/bin/python" ]; then
    say "creating a virtual environment in $PREFIX ($("$PYTHON" -c 'import sys; print(sys.executable)'))"
    mkdir -p "$(dirname "$PREFIX")"
    "$PYTHON" -m venv --without-pip "$PREFIX"
fi

# pip sees the bundle's wheels and nothing else: no index, no pip.conf, no PIP_* from the caller.
while IFS= read -r name; do unset "$name"; done < <(env | sed -n 's/^\(PIP_[A-Za-z0-9_]*\)=.*/\1/p')
export PIP_CONFIG_FILE=/dev/null PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
if ! "$PREFIX/bin/python" -m pip --version >/dev/null 2>&1; then
    pip_wheels=(wheels/pip-*.whl)
    pip_wheel="${pip_wheels[0]}"
    say "installing pip from $pip_wheel"
    "$PREFIX/bin/python" "$pip_wheel/pip" install --quiet --no-index --find-links wheels pip
fi
requirement="flowdrop==$VERSION"
[ -z "$EXTRAS" ] || requirement="flowdrop[$EXTRAS]==$VERSION"
all_wheels=(wheels/*.whl)
say "installing $requirement and its dependencies from ${#all_wheels[@]} wheels (no index)"
"$PREFIX/bin/python" -m pip install --quiet --no-index --find-links "$HERE/wheels" \
    --upgrade --upgrade-strategy eager "$requirement"
# The bundle's own flowdrop wheel even when a build of the same version is already installed.
"$PREFIX/bin/python" -m pip install --quiet --no-index --no-deps --force-reinstall \
    "$HERE"/wheels/flowdrop-"$VERSION"-*.whl
cp BUNDLE.json "$PREFIX/flowdrop-bundle.json"
INSTALLED="$("$PREFIX/bin/flowdrop" --version)"
say "installed $INSTALLED into $PREFIX${PREVIOUS:+ (was flowdrop $PREVIOUS)}"

# --- 4. systemd files ---------------------------------------------------------------------------
CONFIG=""
if [ "$SYSTEMD" = 1 ]; then
    CONFIG="$ROOT/etc/flowdrop/flowdrop.yaml"
    mkdir -p "$ROOT/etc/systemd/system"
    for name in flowdrop.service flowdrop-prune.service flowdrop-prune.timer; do
        unit="$ROOT/etc/systemd/system/$name"
        sed "s#/opt/flowdrop/bin/flowdrop#$PREFIX/bin/flowdrop#g" "systemd/$name" >"$unit.tmp"
        chmod 0644 "$unit.tmp"
        mv "$unit.tmp" "$unit"
        say "unit            $unit"
    done
    install -D -m 0644 systemd/flowdrop.sysusers.conf "$ROOT/etc/sysusers.d/flowdrop.conf"
    say "sysusers entry  $ROOT/etc/sysusers.d/flowdrop.conf"
    install -D -m 0644 systemd/flowdrop.tmpfiles.conf "$ROOT/etc/tmpfiles.d/flowdrop.conf"
    say "tmpfiles entry  $ROOT/etc/tmpfiles.d/flowdrop.conf"
    mkdir -p "$ROOT/usr/share/doc/flowdrop"
    install -m 0644 docs/*.md "$ROOT/usr/share/doc/flowdrop/"
    say "docs            $ROOT/usr/share/doc/flowdrop/"
    if [ -e "$CONFIG" ]; then
        install -m 0644 systemd/flowdrop.yaml "$CONFIG.example"
        say "config          $CONFIG kept as it is; this version's example is $CONFIG.example"
    else
        install -D -m 0644 systemd/flowdrop.yaml "$CONFIG"
        say "config          $CONFIG (the example; edit it)"
    fi
    if [ "$ROOT" = "" ]; then
        command -v systemd-sysusers >/dev/null && systemd-sysusers /etc/sysusers.d/flowdrop.conf
        command -v systemd-tmpfiles >/dev/null && systemd-tmpfiles --create /etc/tmpfiles.d/flowdrop.conf
        if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
    fi
fi

# --- 5. doctor and next steps -------------------------------------------------------------------
say "running flowdrop doctor${CONFIG:+ --config $CONFIG}"
doctor=("$PREFIX/bin/flowdrop" doctor)
[ -z "$CONFIG" ] || doctor+=(--config "$CONFIG")
if [ "$SYSTEMD" = 1 ] && [ "$ROOT" = "" ] && id flowdrop >/dev/null 2>&1 && command -v runuser >/dev/null; then
    doctor=(runuser -u flowdrop -- "${doctor[@]}")
fi
DOCTOR_RC=0
"${doctor[@]}" || DOCTOR_RC=$?

echo
say "done: $INSTALLED in $PREFIX"
[ "$DOCTOR_RC" = 0 ] || say "doctor reported problems (above): fix them before starting the daemon"
echo "next:"
if [ "$SYSTEMD" = 1 ]; then
    echo "  - edit ${CONFIG#"$ROOT"} if needed (roots, workers; ReadWritePaths= in the unit for roots outside /var/lib/flowdrop)"
    if [ "$ROOT" = "" ] && systemctl is-active --quiet flowdrop 2>/dev/null; then
        echo "  - systemctl restart flowdrop        # the running daemon still runs the old code"
    else
        echo "  - systemctl enable --now flowdrop"
    fi
    echo "  - systemctl enable --now flowdrop-prune.timer   # daily retention (retain_* in the config)"
    echo "  - systemctl status flowdrop; journalctl -u flowdrop -e"
    echo "  - flowdrop doctor --config /etc/flowdrop/flowdrop.yaml   (as $PREFIX/bin/flowdrop)"
else
    echo "  - $PREFIX/bin/flowdrop demo                      # the whole loop in a temporary spool"
    echo "  - $PREFIX/bin/flowdrop serve --config FILE       # see docs/operations.md"
fi
if [ -n "$KEPT" ]; then
    echo "  - rollback: stop flowdrop; mv $PREFIX $PREFIX.failed; mv $KEPT $PREFIX; start flowdrop"
fi
