#!/usr/bin/env bash
# need-libs.sh -- the system packages the build needs, checked before `swift build` (which would
# otherwise stop in the compiler with "'cblas.h' file not found"): OpenBLAS, libpng and zlib
# with their headers, and pkg-config, through which Package.swift finds them. The one place of
# this check, for examples.sh, test.sh and .ci/run.
#
#   scripts/need-libs.sh            # status 0 when everything is there
#   scripts/need-libs.sh PKG...     # the same for other Debian packages (e.g. to see the message)
#
# Missing packages are installed when running as root with apt-get (containers, CI):
# apt-get update -qq, then apt-get install -y. Otherwise (or with NEED_LIBS_INSTALL=0) it prints
# the apt-get line that installs them and exits with status 1.
set -euo pipefail

packages=("$@")
[ ${#packages[@]} -gt 0 ] || packages=(libopenblas-dev libpng-dev zlib1g-dev pkg-config)

# Usable without asking dpkg (a system without it, or libraries built from source): the
# pkg-config module Package.swift names, or the command itself.
usable() {
    case $1 in
        libopenblas-dev) pkg_config_has openblas ;;
        libpng-dev) pkg_config_has libpng ;;
        zlib1g-dev) pkg_config_has zlib ;;
        pkg-config) command -v pkg-config >/dev/null 2>&1 ;;
        *) return 1 ;;
    esac
}
pkg_config_has() { command -v pkg-config >/dev/null 2>&1 && pkg-config --exists "$1"; }
# Installed according to dpkg ("install ok installed"; dpkg -s also succeeds for removed packages
# whose configuration files remain).
installed() {
    command -v dpkg-query >/dev/null 2>&1 &&
        [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

missing=()
for p in "${packages[@]}"; do
    usable "$p" || installed "$p" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$EUID" -eq 0 ] && [ "${NEED_LIBS_INSTALL:-1}" != 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "need-libs: installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    exit 0
fi
sudo=$([ "$EUID" -eq 0 ] && echo "" || echo "sudo ")
echo "need-libs: the build needs ${missing[*]}; install with:" >&2
echo "  ${sudo}apt-get install -y ${missing[*]}" >&2
exit 1
