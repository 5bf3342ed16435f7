#!/usr/bin/env bash
# What the deploy tests (tests/deploy: the image, the compose stack) need on this machine:
#   a Docker engine that answers `docker info`, compose (`docker compose` v2 or Debian's `docker-compose` v1.29),
#   and debootstrap (scripts/make_base_image.sh, where the public base image cannot be pulled).
# As root on Debian, missing pieces are installed from apt and dockerd is started in the background (log:
# /var/log/scorer-dockerd.log).  Otherwise it says what is missing and fails; the deploy tests then fail too (they
# are never skipped).
set -euo pipefail
missing=()
command -v dockerd >/dev/null 2>&1 || docker info >/dev/null 2>&1 || missing+=(docker.io)
docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if ((${#missing[@]})); then
  if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: the deploy tests need ${missing[*]}; install them (Debian: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "==> installing ${missing[*]} (Debian packages) for the deploy tests" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "${missing[@]}" >/dev/null; }
fi
if docker info >/dev/null 2>&1; then
  exit 0
fi
if [[ "$(id -u)" != 0 ]]; then
  echo "setup: no Docker engine answers 'docker info'; start one (or join the docker group)" >&2
  exit 1
fi
echo "==> starting dockerd (log: /var/log/scorer-dockerd.log)" >&2
setsid nohup dockerd >>/var/log/scorer-dockerd.log 2>&1 </dev/null &
for _ in $(seq 60); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 1
done
echo "setup: dockerd did not answer within 60 s; see /var/log/scorer-dockerd.log" >&2
exit 1
