#!/usr/bin/env bash
# Installs Debian's headless Chromium for the Space's browser test when it is missing and we are root.
# Without it the browser test skips (it never fails the suite for a missing browser).
command -v chromium >/dev/null 2>&1 && exit 0
[ "$(id -u)" = "0" ] || { echo "[setup] chromium missing and not root: browser test will skip"; exit 0; }
command -v apt-get >/dev/null 2>&1 || exit 0
echo "[setup] installing chromium for the Space browser test..."
(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
  || echo "[setup] chromium install failed: browser test will skip"
