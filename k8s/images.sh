#!/usr/bin/env bash
# make images: builds CineFlow's images with ko (no Docker), configured by .ko.yaml:
#   cineflow-core, cineflow-notification, cineflow-sweeper, and cineflow-devdb (the development
#   database the chart runs with devDatabase.enabled=true)
# for PLATFORMS (default linux/amd64,linux/arm64), tagged VERSION (default: git describe).
#
#   REGISTRY=ghcr.io/<owner> make images   pushes <REGISTRY>/cineflow-<name>:<VERSION> (with an
#                                          SPDX SBOM) and prints the matching `helm install` line
#   make images                            pushes nothing: writes an OCI image layout per image
#                                          under dist/oci/cineflow-<name> (load it with e.g.
#                                          `crane push dist/oci/cineflow-core <ref>`)
#
# Other settings: KO (the ko binary, default bin/ko, which `make images` builds from k8s/tools),
# KO_DEFAULTBASEIMAGE (another base image, e.g. one in a local registry), INSECURE=1 (a
# plain-HTTP registry), IMAGES (a subset, e.g. "core sweeper"), SBOM (spdx or none).
set -euo pipefail
cd "$(dirname "$0")/.."

KO=${KO:-bin/ko}
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
PLATFORMS=${PLATFORMS:-linux/amd64,linux/arm64}
REGISTRY=${REGISTRY:-}
REGISTRY=${REGISTRY%/}
IMAGES=${IMAGES:-core notification sweeper devdb}
SBOM=${SBOM:-spdx}
export VERSION

declare -A SOURCE=(
  [core]=./services/core/cmd/core
  [notification]=./services/notification/cmd/notification
  [sweeper]=./jobs/sweeper/cmd/sweeper
  [devdb]=./pkg/devdb/cmd/devdb
)

flags=(--bare --platform "$PLATFORMS" --tags "$VERSION")
if [ "${INSECURE:-}" = 1 ]; then
  flags+=(--insecure-registry)
fi

mkdir -p dist
declare -A REF=()
for name in $IMAGES; do
  src=${SOURCE[$name]:-}
  if [ -z "$src" ]; then
    echo "images: unknown image $name (known: ${!SOURCE[*]})" >&2
    exit 2
  fi
  if [ -n "$REGISTRY" ]; then
    echo "== cineflow-$name $VERSION ($PLATFORMS) -> $REGISTRY/cineflow-$name"
    KO_DOCKER_REPO="$REGISTRY/cineflow-$name" "$KO" build "${flags[@]}" --sbom "$SBOM" \
      --image-refs "dist/cineflow-$name.ref" "$src"
    REF[$name]=$(tail -n 1 "dist/cineflow-$name.ref")
  else
    out="dist/oci/cineflow-$name"
    echo "== cineflow-$name $VERSION ($PLATFORMS) -> $out"
    rm -rf "$out"
    KO_DOCKER_REPO="cineflow.local/cineflow-$name" "$KO" build "${flags[@]}" --push=false --sbom none \
      --oci-layout-path "$out" "$src" >/dev/null
  fi
done

if [ -z "$REGISTRY" ]; then
  echo
  echo "OCI layouts in dist/oci (nothing pushed). To push: REGISTRY=<registry>/<owner> make images"
  exit 0
fi

# The chart takes each image as registry + repository + tag (+ digest, which wins).
host=${REGISTRY%%/*}
path=${REGISTRY#"$host"}
path=${path#/}
prefix=${path:+$path/}
echo
echo "Pushed. Install the chart with these images:"
echo
printf '  helm install cineflow charts/cineflow'
for name in $IMAGES; do
  ref=${REF[$name]}
  digest=""
  if [[ $ref == *@sha256:* ]]; then
    digest=${ref##*@}
  fi
  key=$name
  if [ "$name" = devdb ]; then
    key=devDatabase
  fi
  printf ' \\\n    --set-string %s.image.registry=%s --set-string %s.image.repository=%scineflow-%s' \
    "$key" "$host" "$key" "$prefix" "$name"
  printf ' \\\n    --set-string %s.image.tag=%s' "$key" "$VERSION"
  if [ -n "$digest" ]; then
    printf ' --set-string %s.image.digest=%s' "$key" "$digest"
  fi
done
printf '\n\n  (add --set devDatabase.enabled=true to try it without a MongoDB: see charts/cineflow/README.md)\n'
