#!/usr/bin/env bash
# Runs the whole test suite in a release build (numeric code is 10-100x slower in debug).
set -euo pipefail
cd "$(dirname "$0")"
scripts/need-libs.sh   # OpenBLAS, libpng, zlib, pkg-config: installed as root, else the apt-get line and stop
swift build -c release
# XCTest only: there are no Swift Testing tests, and its empty run would close the log with "0 tests".
swift test -c release --disable-swift-testing "$@"
