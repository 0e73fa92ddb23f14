#!/usr/bin/env bash
# Debian packages the gateway and its tests need. Installs only what is missing.
#   scripts/system-deps.sh runtime   bubblewrap (tool-call credential isolation)
#   scripts/system-deps.sh test      runtime + redis-server (tests start their own), nginx (reverse-proxy test), chromium and fonts (browser e2e)
set -euo pipefail

want=(bubblewrap:bwrap)
if [ "${1:-runtime}" = "test" ]; then
  want+=(redis-server:redis-server nginx-light:nginx chromium:chromium fonts-liberation:/usr/share/fonts/truetype/liberation)
fi

missing=()
for entry in "${want[@]}"; do
  pkg=${entry%%:*} cmd=${entry##*:}
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || [ -e "$cmd" ] || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "system-deps: missing ${missing[*]}; run as root or: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "system-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
