#!/usr/bin/env bash
# Headless Chromium and chromedriver from the distribution's packages, for the web demo's browser test
# (tests/tools/test_web_demo_browser.py). Idempotent and quiet; needs root (CI runs as root). Without them that test
# is skipped with a reason.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install_browser: not root or no apt-get: install chromium and chromedriver yourself; the browser test will be skipped" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq chromium chromium-driver >/dev/null
echo "install_browser: $(chromium --version 2>/dev/null | head -n 1)"
