#!/usr/bin/env bash
# A local Python 3.11 Debian bookworm base image, for machines that cannot pull images (no registry reachable).
#
# The scorer image's Dockerfile defaults to the public python:3.11-slim-bookworm image; where that cannot be pulled
# (these development machines), the deploy tests pass this one as its BASE_IMAGE build argument instead.  It is
# `debootstrap --variant=minbase` + python3, python3-venv and ca-certificates from the Debian mirror apt uses, with
# this host's CA bundle, as a company's base image carries its CA (pip inside the build then trusts the same
# certificates as pip on the host).  Needs root and debootstrap; a no-op when the image exists.
#
#   usage: scripts/make_base_image.sh [IMAGE]     (default: scorer-base:bookworm-local)
set -euo pipefail
image=${1:-scorer-base:bookworm-local}
docker=${DOCKER:-docker}
if "$docker" image inspect "$image" >/dev/null 2>&1; then
  echo "base image $image: already here" >&2
  exit 0
fi
command -v debootstrap >/dev/null || { echo "error: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }
[[ $(id -u) == 0 ]] || { echo "error: debootstrap needs root" >&2; exit 1; }
mirror=http://deb.debian.org/debian
if [[ -r /etc/apt/sources.list.d/debian.sources ]]; then
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
fi
root=$(mktemp -d /tmp/scorer-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "==> debootstrap bookworm from $mirror (about a minute)" >&2
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" "$mirror" >/dev/null
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | "$docker" import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
  --change 'CMD ["python3"]' - "$image" >/dev/null
echo "base image $image: made ($("$docker" image inspect -f '{{.Size}}' "$image") bytes)" >&2
