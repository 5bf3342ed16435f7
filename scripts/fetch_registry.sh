#!/usr/bin/env bash
# Fetch Apicurio Registry (Apache-2.0; a Confluent-compatible Schema Registry API under /apis/ccompat/v7) from
# Maven Central into a cache, for the tests and the examples:
#   ${REGISTRY_CACHE_DIR:-<repo>/.cache/registry}/<version>/apicurio-registry-app-<version>/quarkus-run.jar
# Idempotent: does nothing when the unpacked application is already complete.
# Environment: APICURIO_VERSION (default 3.3.3), REGISTRY_CACHE_DIR.
# Prints the folder that holds quarkus-run.jar on stdout (the last line); progress goes to stderr.
# Running it needs Java >= 21 (stream_worker/tools/registry.py finds one).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VERSION="${APICURIO_VERSION:-3.3.3}"
CACHE_DIR="${REGISTRY_CACHE_DIR:-$REPO/.cache/registry}"
DEST="$CACHE_DIR/$VERSION"
MARKER="$DEST/.complete"

find_app() { dirname "$(find "$DEST" -maxdepth 3 -name quarkus-run.jar -print -quit)"; }

if [[ -f "$MARKER" ]] && [[ -n "$(find "$DEST" -maxdepth 3 -name quarkus-run.jar -print -quit)" ]]; then
  echo "fetch_registry: Apicurio Registry $VERSION already present" >&2
  find_app
  exit 0
fi

command -v mvn >/dev/null || { echo "fetch_registry: mvn not found (needs Maven 3)" >&2; exit 1; }

echo "fetch_registry: fetching Apicurio Registry $VERSION (~160 MB) into $DEST" >&2
mkdir -p "$DEST"
TMP="$(mktemp -d "$DEST/tmp.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
MAVEN_OPTS="${MAVEN_OPTS:--Xmx256m}" mvn -q -B -Dstyle.color=never dependency:copy \
  -Dartifact="io.apicurio:apicurio-registry-app:$VERSION:tar.gz:all" \
  -DoutputDirectory="$TMP" 2>&1 | sed 's/\x1b\[[0-9;]*m//g' >&2
archive="$(find "$TMP" -maxdepth 1 -name '*.tar.gz' -print -quit)"
[[ -n "$archive" ]] || { echo "fetch_registry: the tar.gz is missing after download" >&2; exit 1; }
tar -xzf "$archive" -C "$TMP"
rm -f "$archive"
[[ -n "$(find "$TMP" -maxdepth 3 -name quarkus-run.jar -print -quit)" ]] \
  || { echo "fetch_registry: quarkus-run.jar missing in the archive" >&2; exit 1; }
find "$DEST" -mindepth 1 -maxdepth 1 ! -name "$(basename "$TMP")" -exec rm -rf {} +
mv "$TMP"/* "$DEST"/
rmdir "$TMP"
trap - EXIT
touch "$MARKER"
find_app
