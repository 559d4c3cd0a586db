#!/usr/bin/env bash
# Builds porter-bundle's images with podman: $IMAGE (target `server`) and $AGENT_IMAGE (target
# `agent`), from the Containerfile at the repository root. Run by `make image`.
#
# The base is $BASE (default: the Containerfile's, python:3.11-slim-bookworm from Docker Hub).
# When it is not in the store and cannot be pulled (no registry, as on these machines), the base
# is built from Debian packages instead: debootstrap --variant=minbase with python3, python3-venv
# and ca-certificates, from the Debian mirror apt is configured with ($DEBIAN_MIRROR overrides it),
# imported as $LOCAL_BASE. The rootfs tarball is cached in $BASE_CACHE, so a rebuild takes seconds.
# BASE_BUILD=debootstrap skips the pull; BASE_BUILD=pull fails instead of building.
#
# Which podman store: whatever CONTAINERS_CONF / CONTAINERS_STORAGE_CONF say (the Makefile points
# them at build/podman, with the settings these machines need; see docs in tests/engine.py).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
IMAGE=${IMAGE:-localhost/porter-bundle:dev}
AGENT_IMAGE=${AGENT_IMAGE:-localhost/porter-bundle-agent:dev}
BASE=${BASE:-docker.io/library/python:3.11-slim-bookworm}
BASE_BUILD=${BASE_BUILD:-auto}
PULL_TIMEOUT=${PULL_TIMEOUT:-60}
BASE_CACHE=${BASE_CACHE:-$root/build/base}

say() { echo "image: $*" >&2; }

debian_suite() {
  # The machine's release (bookworm here); the base must carry the same python3 minor as tested.
  . /etc/os-release
  echo "${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}"
}

debian_mirror() {
  if [[ -n "${DEBIAN_MIRROR:-}" ]]; then echo "$DEBIAN_MIRROR"; return; fi
  local uri
  # deb822 sources first (Debian 12's default), then the one-line format.
  uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  if [[ -z "$uri" && -f /etc/apt/sources.list ]]; then
    uri=$(awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' /etc/apt/sources.list)
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

build_local_base() {
  local suite mirror tarball rootfs
  suite=$(debian_suite)
  LOCAL_BASE=${LOCAL_BASE:-localhost/porter-bundle-base:$suite}
  if podman image exists "$LOCAL_BASE"; then BASE=$LOCAL_BASE; return; fi
  tarball="$BASE_CACHE/$suite.tar"
  if [[ ! -s "$tarball" ]]; then
    command -v debootstrap >/dev/null || { echo "error: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }
    mirror=$(debian_mirror)
    mkdir -p "$BASE_CACHE"
    rootfs=$(mktemp -d "$BASE_CACHE/rootfs.XXXXXX")
    trap 'rm -rf "$rootfs"' EXIT
    say "building the base from Debian packages: debootstrap $suite from $mirror (about a minute)"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
      "$suite" "$rootfs" "$mirror" >"$BASE_CACHE/debootstrap.log" 2>&1 \
      || { tail -n 20 "$BASE_CACHE/debootstrap.log" >&2; exit 1; }
    # No package caches or lists in the image.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*
    tar -C "$rootfs" --numeric-owner -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$rootfs"
    trap - EXIT
  fi
  say "importing $tarball as $LOCAL_BASE"
  podman import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$tarball" "$LOCAL_BASE" >/dev/null
  BASE=$LOCAL_BASE
}

if [[ "$BASE_BUILD" == debootstrap ]]; then
  build_local_base
elif ! podman image exists "$BASE"; then
  say "pulling $BASE (at most ${PULL_TIMEOUT}s)"
  if ! timeout "$PULL_TIMEOUT" podman pull -q "$BASE" >/dev/null 2>&1; then
    [[ "$BASE_BUILD" == pull ]] && { echo "error: cannot pull $BASE" >&2; exit 1; }
    say "cannot pull $BASE: building a base from Debian packages instead"
    build_local_base
  fi
fi

# pip inside the build trusts what pip on this machine trusts ($PIP_CA, else pip's configured
# cert, else the system bundle): handed over as a build secret, never stored in the image.
PIP_CA=${PIP_CA:-${PIP_CERT:-$(python3 -m pip config get global.cert 2>/dev/null || true)}}
[[ -z "$PIP_CA" && -s /etc/ssl/certs/ca-certificates.crt ]] && PIP_CA=/etc/ssl/certs/ca-certificates.crt
build=(podman build --build-arg "BASE=$BASE" -f Containerfile)
[[ -n "$PIP_CA" ]] && build+=(--secret "id=pip-ca,src=$PIP_CA")

mkdir -p "$BASE_CACHE"
say "building $IMAGE and $AGENT_IMAGE on $BASE"
cd "$root"
"${build[@]}" --target server -t "$IMAGE" . >"$BASE_CACHE/build.log" 2>&1 \
  || { tail -n 30 "$BASE_CACHE/build.log" >&2; exit 1; }
"${build[@]}" --target agent -t "$AGENT_IMAGE" . >>"$BASE_CACHE/build.log" 2>&1 \
  || { tail -n 30 "$BASE_CACHE/build.log" >&2; exit 1; }
say "built $IMAGE and $AGENT_IMAGE"
