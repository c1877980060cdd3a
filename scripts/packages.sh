# Sourced by the scripts that install what they need (Debian packages):
#
#   need PACKAGE CHECK...   PACKAGE is wanted unless the command CHECK
#                           succeeds (e.g. `need dnsperf command -v dnsperf`)
#   install_needed          one apt-get update and install for all of them
#                           (through sudo when not root)
packages=()
need() {
  local package=$1
  shift
  "$@" >/dev/null 2>&1 || packages+=("$package")
}
install_needed() {
  [ "${#packages[@]}" -gt 0 ] || return 0
  local sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
  echo "installed: ${packages[*]}"
}
