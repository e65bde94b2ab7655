#!/usr/bin/env bash
# Installs everything Tashi needs on a Debian 12 machine, and nothing that is already there.
#
#   scripts/bootstrap.sh            Debian packages, then the virtualenv and the project
#   scripts/bootstrap.sh packages   only the Debian packages
#   scripts/bootstrap.sh venv       only the virtualenv and the project
#
# Idempotent and quick when all is in place: one dpkg-query, one stat. `make` calls it before
# test, check, demo and bench. Prints one line per step it takes.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV=.venv
# Reinstall the project into the venv when its metadata or this installer changed.
STAMP="$VENV/.tashi-installed"

# linux-source-6.1 and linux-image-cloud-amd64 are deliberately absent: the guest image builder
# fetches them with `apt-get download` and unpacks them itself; the host must not boot the one or
# keep the other. flex, bison, bc, libelf-dev and xz-utils build the guest's kernel from source;
# mmdebstrap builds the Debian guest (make debian-image), openssh-client logs into it in its test;
# nftables steers the guests' instance metadata, genisoimage makes their NoCloud seed disks;
# prosody is the XMPP server of the XMPP tests and `tashi-cluster start --xmpp`.
PACKAGES=(
    python3 python3-venv python3-dev build-essential make
    postgresql mariadb-server
    qemu-system-x86 qemu-utils busybox-static dnsmasq-base dnsmasq-utils iproute2 cpio e2fsprogs
    dosfstools mtools syslinux lz4 flex bison bc libelf-dev xz-utils mmdebstrap openssh-client
    nftables genisoimage prosody
)

say() { printf 'bootstrap: %s\n' "$*"; }
die() { printf 'bootstrap: error: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [[ "$(id -u)" -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

missing_packages() {
    local pkg status
    for pkg in "${PACKAGES[@]}"; do
        status="$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)"
        if [[ "$status" != "installed" ]]; then
            printf '%s\n' "$pkg"
        fi
    done
}

# Debian's postgresql and mariadb-server start system services from their postinst. The tests
# start their own servers on random ports, so those services are not wanted; a policy-rc.d that
# answers 101 ("action forbidden") keeps invoke-rc.d and deb-systemd-invoke from starting them.
# We only add one for the duration of the install, and only when the machine has none.
POLICY=/usr/sbin/policy-rc.d
remove_policy() { as_root rm -f "$POLICY"; }

install_packages() {
    command -v dpkg-query >/dev/null || die "this is not a Debian-like system (no dpkg-query)"
    local missing
    mapfile -t missing < <(missing_packages)
    if [[ "${#missing[@]}" -eq 0 ]]; then
        say "Debian packages: all ${#PACKAGES[@]} present"
        return
    fi
    say "Debian packages missing: ${missing[*]}"
    if [[ ! -e "$POLICY" ]]; then
        say "keeping package services from starting while installing (temporary $POLICY)"
        printf '#!/bin/sh\n# added by tashi scripts/bootstrap.sh during an install\nexit 101\n' \
            | as_root tee "$POLICY" >/dev/null
        as_root chmod 755 "$POLICY"
        trap remove_policy EXIT
    fi
    say "apt-get update"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    say "apt-get install ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
    mapfile -t missing < <(missing_packages)
    [[ "${#missing[@]}" -eq 0 ]] || die "still missing after apt-get install: ${missing[*]}"
    say "Debian packages: installed"
}

find_python() {
    local candidate
    for candidate in "$(command -v python3 || true)" /usr/bin/python3; do
        if [[ -n "$candidate" && -x "$candidate" ]] \
            && "$candidate" -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
        then
            printf '%s\n' "$candidate"
            return
        fi
    done
    die "no python3 >= 3.11 with the venv module (Debian: apt-get install python3 python3-venv)"
}

venv_works() {
    [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c 'import sys' 2>/dev/null
}

install_venv() {
    if ! venv_works; then
        local python
        python="$(find_python)"
        # A venv whose interpreter vanished (a pyenv version removed, say) cannot be repaired.
        [[ -e "$VENV" ]] && { say "removing broken virtualenv $VENV"; rm -rf "$VENV"; }
        say "creating virtualenv $VENV with $python ($("$python" --version 2>&1))"
        "$python" -m venv "$VENV"
    fi
    if [[ -f "$STAMP" && "$STAMP" -nt pyproject.toml && "$STAMP" -nt scripts/bootstrap.sh ]]; then
        say "project: installed in $VENV and current"
        return
    fi
    say "pip install -e '.[dev]' into $VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[dev]'
    touch "$STAMP"
    say "project: installed"
}

case "${1:-all}" in
    all) install_packages; install_venv ;;
    packages) install_packages ;;
    venv) install_venv ;;
    *) die "usage: $0 [all|packages|venv]" ;;
esac
