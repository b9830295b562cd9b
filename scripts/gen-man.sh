#!/usr/bin/env bash
# Regenerates the manual pages docs/man/<tool>.1 of every executable product in Package.swift,
# and docs/man/<tool>.json, the `<tool> --experimental-dump-help` each page was made from.
#
#   scripts/gen-man.sh          # then commit docs/man/
#
# The pages come from swift-argument-parser's `generate-manual` command plugin (the package
# dependency; no network, no Python): it builds the package in release mode and renders each
# tool's option groups, help texts and subcommands as mdoc(7); scripts/man-page.swift then adds
# the defaults `--help` shows and drops the `help` subcommand single commands do not have.
# Read a page with `man -l docs/man/denoise.1`.
#
# Deterministic: a fixed date (MAN_DATE, yyyy-mm-dd) instead of today, no paths. Run it again
# and nothing changes unless a tool's interface did. ManPageTests checks that the committed
# docs/man/<tool>.json equal what the built tools dump, so a changed option name or help text
# without a rerun of this script fails the tests.
set -euo pipefail
cd "$(dirname "$0")/.."

MAN_DATE="${MAN_DATE:-2026-12-01}"
OUT=docs/man

# The executable products, in Package.swift's order.
tools=$(sed -n 's/.*\.executable( *name: *"\([^"]*\)".*/\1/p' Package.swift)
[ -n "$tools" ] || { echo "gen-man.sh: no .executable(name: ...) products in Package.swift" >&2; exit 1; }

swift build -c release
bin=$(swift build -c release --show-bin-path)

# The plugin writes one page per product under .build/plugins (the folder layout varies with
# the SwiftPM version): take the pages written after this stamp.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
stamp="$tmp/stamp"; touch "$stamp"
swiftc -O scripts/man-page.swift -o "$tmp/man-page" 2> "$tmp/swiftc.log" || { cat "$tmp/swiftc.log" >&2; exit 1; }
sleep 1   # file times of 1 s resolution: pages left by an earlier run stay older than the stamp
swift package generate-manual --configuration release --date "$MAN_DATE" > /dev/null

mkdir -p "$OUT"
rm -f "$OUT"/*.1 "$OUT"/*.json   # pages of removed tools go too
for tool in $tools; do
    page=$(find .build/plugins -name "$tool.1" -newer "$stamp" -print -quit)
    [ -n "$page" ] || { echo "gen-man.sh: the plugin wrote no page for '$tool'" >&2; exit 1; }
    "$bin/$tool" --experimental-dump-help > "$OUT/$tool.json"
    "$tmp/man-page" "$OUT/$tool.json" "$page" > "$OUT/$tool.1"
    # generate-manual drops non-ASCII characters (pi, theta, sigma, ...) from the text.
    if LC_ALL=C grep -q '[^ -~[:space:]]' "$OUT/$tool.json"; then
        echo "gen-man.sh: note: $tool's help has non-ASCII characters; the man page drops them" >&2
    fi
done

echo "gen-man.sh: $(echo $tools | wc -w) pages in $OUT/ (date $MAN_DATE)"
git status --short -- "$OUT"
