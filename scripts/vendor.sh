#!/usr/bin/env bash
# Re-fetch the vendored JavaScript (mermaid for the docs' diagrams; iframe-worker for their
# search from file://; vega, vega-lite and
# vega-embed for `make plots`; Swagger UI for the service's /docs) from the npm registry,
# exactly as vendor/package-lock.json pins it (npm ci checks every tarball's integrity hash),
# and copy the files the project serves into docs/assets/vendor/ and
# src/starry_guide/serve/web/static/swagger-ui/, each with a SHA256SUMS (checked by the tests).
# Only needed to change a version: the copied files are committed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$root/vendor/package.json" "$root/vendor/package-lock.json" "$tmp/"
(cd "$tmp" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
dest="$root/docs/assets/vendor"
mkdir -p "$dest"
cp "$tmp/node_modules/mermaid/dist/mermaid.min.js" \
   "$tmp/node_modules/vega/build/vega.min.js" \
   "$tmp/node_modules/vega-lite/build/vega-lite.min.js" \
   "$tmp/node_modules/vega-embed/build/vega-embed.min.js" "$dest/"
# Material's offline plugin runs search from file:// with this Web Worker shim
cp "$tmp/node_modules/iframe-worker/shim/index.js" "$dest/iframe-worker-shim.min.js"
for pkg in mermaid vega vega-lite vega-embed iframe-worker; do
    cp "$tmp/node_modules/$pkg/LICENSE" "$dest/LICENSE.$pkg" 2>/dev/null || true
done
(cd "$dest" && sha256sum ./*.min.js > SHA256SUMS)
swagger="$root/src/starry_guide/serve/web/static/swagger-ui"
mkdir -p "$swagger"
cp "$tmp/node_modules/swagger-ui-dist/swagger-ui-bundle.js" \
   "$tmp/node_modules/swagger-ui-dist/swagger-ui.css" \
   "$tmp/node_modules/swagger-ui-dist/favicon-32x32.png" "$swagger/"
cp "$tmp/node_modules/swagger-ui-dist/LICENSE" "$swagger/LICENSE"
(cd "$swagger" && sha256sum ./swagger-ui-bundle.js ./swagger-ui.css ./favicon-32x32.png > SHA256SUMS)
for folder in "$dest" "$swagger"; do echo "vendored into $folder:"; cat "$folder/SHA256SUMS"; done
