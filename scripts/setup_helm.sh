#!/usr/bin/env bash
# The Helm chart's tools (deploy/helm), idempotent and quick when done:
#   .venv/bin/helm            helm, built from the Go module proxy (no other download site involved);
#   .cache/helm/keda-crds/    KEDA's CRDs (ScaledObject, TriggerAuthentication) from KEDA's Go module source, for
#                             checking the rendered ScaledObject offline (tests/deploy/test_helm.py).
#   promtool                  the alert rules' checks and unit tests: Debian's prometheus package, installed with apt
#                             when run as root (otherwise the tests say it is missing).
set -euo pipefail
cd "$(dirname "$0")/.."
HELM_VERSION=v3.22.0
KEDA_VERSION=v2.21.0
VENV=${VENV:-.venv}
CRDS=.cache/helm/keda-crds
GO=$(command -v go || { [[ -x /usr/local/go/bin/go ]] && echo /usr/local/go/bin/go; } || true)
if [[ -z "$GO" ]]; then
  echo "setup_helm: Go is missing (needed to build helm $HELM_VERSION and fetch KEDA's CRDs); install Go 1.24+" >&2
  exit 1
fi
mkdir -p "$VENV/bin"
# The module version compiled in (helm's own `version` says only "v3.22" when built by go install).
built=$([[ -x "$VENV/bin/helm" ]] && "$GO" version -m "$VENV/bin/helm" | awk '$1 == "mod" && $2 == "helm.sh/helm/v3" {print $3}' || true)
if [[ "$built" != "$HELM_VERSION" ]]; then
  echo "==> building helm $HELM_VERSION into $VENV/bin (Go module proxy; first time: several minutes)" >&2
  GOBIN="$(cd "$VENV/bin" && pwd)" "$GO" install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
fi
if [[ "$(cat "$CRDS/version" 2>/dev/null)" != "$KEDA_VERSION" ]]; then
  echo "==> fetching KEDA $KEDA_VERSION's CRDs (its Go module's source)" >&2
  dir=$("$GO" mod download -json "github.com/kedacore/keda/v2@$KEDA_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [[ -n "$dir" && -d "$dir/config/crd/bases" ]] || { echo "setup_helm: no CRDs in KEDA's module ($dir)" >&2; exit 1; }
  mkdir -p "$CRDS"
  cp "$dir/config/crd/bases/keda.sh_scaledobjects.yaml" "$dir/config/crd/bases/keda.sh_triggerauthentications.yaml" "$CRDS/"
  chmod u+w "$CRDS"/*.yaml
  echo "$KEDA_VERSION" > "$CRDS/version"
fi
if ! command -v promtool >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
  echo "==> installing promtool (Debian's prometheus package)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q prometheus >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q prometheus >/dev/null; }
fi
