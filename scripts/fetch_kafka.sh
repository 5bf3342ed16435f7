#!/usr/bin/env bash
# Fetch a real Apache Kafka broker (jars only, KRaft mode) from Maven Central into a cache:
#   ${KAFKA_CACHE_DIR:-<repo>/.cache/kafka}/<version>/libs
# Idempotent: does nothing when the libs directory is already complete.
# Environment: KAFKA_VERSION (default: the version pinned in deploy/kafka/pom.xml), KAFKA_CACHE_DIR.
# Prints the libs directory on stdout (the last line); progress goes to stderr.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
POM="$REPO/deploy/kafka/pom.xml"
CACHE_DIR="${KAFKA_CACHE_DIR:-$REPO/.cache/kafka}"

if [[ -z "${KAFKA_VERSION:-}" ]]; then
  KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM" | head -n1)"
fi
[[ -n "$KAFKA_VERSION" ]] || { echo "fetch_kafka: cannot read kafka.version from $POM" >&2; exit 1; }

DEST="$CACHE_DIR/$KAFKA_VERSION"
LIBS="$DEST/libs"
MARKER="$DEST/.complete"

if [[ -f "$MARKER" ]] && compgen -G "$LIBS/kafka_2.13-$KAFKA_VERSION.jar" >/dev/null; then
  echo "fetch_kafka: Apache Kafka $KAFKA_VERSION already present" >&2
  echo "$LIBS"
  exit 0
fi

command -v mvn >/dev/null || { echo "fetch_kafka: mvn not found (needs Maven 3 and Java 17+)" >&2; exit 1; }

echo "fetch_kafka: fetching Apache Kafka $KAFKA_VERSION into $LIBS" >&2
mkdir -p "$DEST"
TMP="$(mktemp -d "$DEST/libs.tmp.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

# Small heap for Maven itself: this machine is shared. (sed strips the colour codes mvn -q emits.)
MAVEN_OPTS="${MAVEN_OPTS:--Xmx256m}" mvn -q -B -Dstyle.color=never -f "$POM" \
  -Dkafka.version="$KAFKA_VERSION" \
  dependency:copy-dependencies \
  -DincludeScope=runtime \
  -DoutputDirectory="$TMP" 2>&1 | sed 's/\x1b\[[0-9;]*m//g' >&2

[[ -f "$TMP/kafka_2.13-$KAFKA_VERSION.jar" ]] || { echo "fetch_kafka: kafka_2.13-$KAFKA_VERSION.jar missing after download" >&2; exit 1; }

rm -rf "$LIBS"
mv "$TMP" "$LIBS"
trap - EXIT
touch "$MARKER"
echo "fetch_kafka: $(ls "$LIBS" | wc -l) jars in $LIBS" >&2
echo "$LIBS"
