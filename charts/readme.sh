#!/usr/bin/env bash
# Regenerates the parameters tables of charts/cineflow/README.md (its "## Parameters" section)
# from the "## @param" and "## @section" comments of charts/cineflow/values.yaml, with bitnami's
# readme-generator-for-helm (npm), at the version pinned below: `make chart-readme`. The tool is
# installed once under ~/.cache/cineflow-npm (XDG_CACHE_HOME), never into the repository; it needs
# node and npm (Debian's nodejs and npm, or the machine's). charts/test fails when the committed
# README differs from what this script writes.
#
#   charts/readme.sh [OUT]   write to OUT instead of updating the README in place ("-": stdout)
set -euo pipefail
GENERATOR_VERSION=2.7.2
chart="$(cd "$(dirname "${BASH_SOURCE[0]}")/cineflow" && pwd)"
out="${1:-$chart/README.md}"

cache="${XDG_CACHE_HOME:-$HOME/.cache}/cineflow-npm/readme-generator-for-helm-$GENERATOR_VERSION"
generator="$cache/node_modules/@bitnami/readme-generator-for-helm/bin/index.js"
if [[ ! -f "$generator" ]]; then
	if ! command -v npm >/dev/null; then
		echo "readme.sh: npm not found (apt-get install nodejs npm): it installs @bitnami/readme-generator-for-helm@$GENERATOR_VERSION" >&2
		exit 127
	fi
	# Into a fresh directory, then renamed: a concurrent or interrupted install never leaves a
	# half-installed tool at $cache.
	mkdir -p "$(dirname "$cache")"
	staging="$(mktemp -d "$cache.XXXXXX")"
	if ! npm install --prefix "$staging" --no-audit --no-fund --no-save --loglevel=error \
		"@bitnami/readme-generator-for-helm@$GENERATOR_VERSION" >&2; then
		rm -rf "$staging"
		exit 1
	fi
	mv -T "$staging" "$cache" 2>/dev/null || rm -rf "$staging" # another run got there first
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$chart/README.md" "$work/README.md"
if ! node "$generator" --values "$chart/values.yaml" --readme "$work/README.md" >"$work/log" 2>&1; then
	cat "$work/log" >&2
	exit 1
fi
if [[ "$out" == "-" ]]; then
	cat "$work/README.md"
else
	cp "$work/README.md" "$out.tmp"
	mv "$out.tmp" "$out"
fi
