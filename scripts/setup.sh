#!/usr/bin/env bash
# One-time setup for a fresh Debian 12 machine (also run by CI): npm packages, a WebGPU adapter
# (Mesa's software Vulkan from bookworm-backports when no GPU driver is present), and the Python
# references the tests compare against (Debian's python3-torch, sentencepiece, PIL) plus ffmpeg, and
# redis-server for the distributed-evaluation test.
# Idempotent: does nothing that is already done. Without root it prints the commands instead.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

# Mesa's lavapipe: bookworm main ships 22.x, which Dawn rejects; backports ships 25.x.
lavapipe_ok() {
  local v
  v=$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true)
  [ -n "$v" ] && dpkg --compare-versions "$v" ge 24
}
# chromium: the browser tests (test/browser/) drive it headless through playwright-core (WebGPU on SwiftShader).
for p in python3-torch python3-sentencepiece python3-pil python3-numpy ffmpeg redis-server chromium; do have_pkg "$p" || need_apt+=("$p"); done

if command -v apt-get >/dev/null 2>&1 && { ! lavapipe_ok || [ ${#need_apt[@]} -gt 0 ]; }; then
  backports='/etc/apt/sources.list.d/bookworm-backports.sources'
  cmds=()
  if ! lavapipe_ok; then
    cmds+=("printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' > $backports")
    cmds+=("apt-get update -q")
    cmds+=("DEBIAN_FRONTEND=noninteractive apt-get install -y -q -t bookworm-backports mesa-vulkan-drivers")
  else
    cmds+=("apt-get update -q")
  fi
  [ ${#need_apt[@]} -gt 0 ] && cmds+=("DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ${need_apt[*]}")
  if [ "$(id -u)" = 0 ]; then
    for c in "${cmds[@]}"; do echo "+ $c"; bash -c "$c"; done
  else
    echo "setup: not root; run these as root, then run this script again:" >&2
    for c in "${cmds[@]}"; do echo "  $c" >&2; done
    exit 1
  fi
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  # npm install, not npm ci: the registry here lacks some optional platform packages (rollup's), so
  # the lockfile cannot list them and npm ci refuses it; install still follows the lockfile.
  npm install --no-audit --no-fund
fi

# Prove a WebGPU adapter is usable (prints it, or the exact fix).
npx tsx scripts/probe-gpu.ts
