#!/usr/bin/env bash
# Runs the whole test suite in a release build (numeric code is 10-100x slower in debug).
set -euo pipefail
cd "$(dirname "$0")"
swift build -c release
swift test -c release "$@"
