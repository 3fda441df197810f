#!/usr/bin/env bash
# Install everything the development stack needs: Debian packages, a venv
# with CKAN ($CKAN_VERSION), this plugin in editable mode and the test tools.
# Idempotent: a second run only checks and returns.
source "$(dirname "$0")/lib.sh"

APT_PACKAGES=(postgresql libpq-dev redis-server ceph-mon ceph-osd radosgw
              ceph-common uuid-runtime gcc make python3 python3-venv
              python3-dev curl
              # the resource form's browser tests (tests/integration/web)
              chromium chromium-driver)

install_debian_packages() {
    local missing=()
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" \
            || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "Debian packages missing (${missing[*]}): run as root or install them"
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Keep package scripts from starting system services: the stack starts
    # its own instances on its own ports.
    local policy=/usr/sbin/policy-rc.d
    if [ ! -e $policy ]; then
        printf '#!/bin/sh\nexit 101\n' > $policy && chmod +x $policy
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt-get update -qq || die "apt-get update failed: check the network and /etc/apt/sources.list"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$DEVSTACK/apt.log" 2>&1 \
        || die "installing Debian packages failed, see $DEVSTACK/apt.log"
    return 0
}

install_venv() {
    local stamp=$VENV/.dcor-stamp
    local want
    want="$CKAN_VERSION $(cat "$ROOT_DIR/pyproject.toml" "$STACK_DIR/requirements-dev.txt" | sha256sum | cut -c1-16)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return 0
    fi
    log "creating venv $VENV (CKAN $CKAN_VERSION)"
    local pip_log=$DEVSTACK/pip-$CKAN_VERSION.log
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    {
        "$VENV/bin/pip" install --upgrade pip setuptools wheel &&
        "$VENV/bin/pip" install "ckan[requirements]==$CKAN_VERSION" &&
        "$VENV/bin/pip" install -e "$ROOT_DIR" -r "$STACK_DIR/requirements-dev.txt"
    } >"$pip_log" 2>&1 || die "pip install failed, see $pip_log"
    echo "$want" > "$stamp"
}

mkdir -p "$DEVSTACK"
install_debian_packages
install_venv
log "installed (CKAN $CKAN_VERSION in $VENV)"
