#!/usr/bin/env bash
# Install everything the development stack needs: Debian packages, a venv
# with CKAN ($CKAN_VERSION), this plugin in editable mode and the test tools.
# Idempotent: a second run only checks and returns.
source "$(dirname "$0")/lib.sh"

APT_PACKAGES=(postgresql libpq-dev redis-server ceph-mon ceph-osd radosgw
              ceph-common uuid-runtime gcc make python3 python3-venv
              python3-dev curl)

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
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [ ! -e $policy ]; then
        printf '#!/bin/sh\nexit 101\n' > $policy && chmod +x $policy && created_policy=1
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [ $created_policy -eq 1 ] && rm -f $policy
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
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip setuptools wheel
    "$VENV/bin/pip" install -q "ckan[requirements]==$CKAN_VERSION"
    "$VENV/bin/pip" install -q -e "$ROOT_DIR" -r "$STACK_DIR/requirements-dev.txt"
    echo "$want" > "$stamp"
}

mkdir -p "$DEVSTACK"
install_debian_packages
install_venv
log "installed (CKAN $CKAN_VERSION in $VENV)"
