#!/usr/bin/env bash
# Rebuild utptrack_ros/data/sources/ (curated object cut-outs + backgrounds) from the Debian
# package opencv-doc and scikit-image's bundled data. The result is committed to the repository,
# so `make setup` does NOT need this script; run it only to change or re-derive the curated set.
#   usage: bash scripts/fetch_sources.sh [venv]      (default venv: .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
(cd "$WORK" && apt-get download opencv-doc >/dev/null)
dpkg -x "$WORK"/opencv-doc_*.deb "$WORK/x"
DATA="$WORK/x/usr/share/doc/opencv-doc/examples/data"
rm -rf utptrack_ros/data/sources/objects utptrack_ros/data/sources/backgrounds
"$VENV/bin/python" -m utptrack_ros.data.curate --opencv-doc "$DATA" --out utptrack_ros/data/sources
