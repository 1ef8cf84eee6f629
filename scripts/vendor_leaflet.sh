#!/usr/bin/env bash
# Vendor Leaflet into bot/web/static/leaflet from the npm registry (the files are committed, so the
# console never loads anything from a CDN). Rerun after changing LEAFLET_VERSION.
set -euo pipefail
LEAFLET_VERSION="${LEAFLET_VERSION:-1.9.4}"
cd "$(dirname "$0")/.."
dest=bot/web/static/leaflet
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "leaflet@${LEAFLET_VERSION}" >/dev/null && tar -xzf leaflet-*.tgz)
rm -rf "$dest" && mkdir -p "$dest/images"
cp "$tmp/package/dist/leaflet.js" "$tmp/package/dist/leaflet.css" "$dest/"
cp "$tmp/package/dist/images/"*.png "$dest/images/"
cp "$tmp/package/LICENSE" "$dest/LICENSE"
echo "$LEAFLET_VERSION" > "$dest/VERSION"
echo "leaflet $LEAFLET_VERSION -> $dest"
