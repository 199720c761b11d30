#!/usr/bin/env bash
# gdb-versions.sh - Debian's gdb of other releases, unpacked without root into a cache, so
# that the test suite runs under each gdb (and its embedded Python) as well as the host's.
#
# Usage:  gdb-versions.sh [CACHE_DIR]          (default: .cache/gdb)
#   GDB_SUITES  Debian suites whose gdb to prepare (default "trixie": gdb 16.3, Python 3.13)
# Prints one line per prepared gdb:  SUITE GDB_VERSION BIN_DIR
#   BIN_DIR/gdb runs that suite's gdb with that suite's loader, libraries, Python and Pygments
#   (all unpacked from the suite's packages, gdb's whole dependency closure); put BIN_DIR first
#   in PATH. The inferiors it starts run on the host's own libraries, as under the host's gdb.
# Cache hits need no network. Exit status: 0 all ready; 1 some suite failed; 2 bad environment.
set -uo pipefail

die()  { echo "gdb-versions: error: $*" >&2; exit 2; }
warn() { echo "gdb-versions: $*" >&2; }
. "$(dirname "$0")/apt-private.sh"

[ $# -le 1 ] || die "usage: $0 [CACHE_DIR]"
CACHE=${1:-.cache/gdb}
SUITES=${GDB_SUITES:-trixie}
TMO=${GDB_VERSIONS_TIMEOUT:-300}
for t in apt-get dpkg-deb timeout flock; do command -v "$t" >/dev/null || die "'$t' not found"; done
[ "$(dpkg --print-architecture 2>/dev/null)" = amd64 ] || die "only an amd64 host is supported"
mkdir -p "$CACHE" || die "cannot create $CACHE"
CACHE=$(cd "$CACHE" && pwd -P)
exec 9>"$CACHE/.lock"
flock -w "$TMO" 9 || die "another gdb-versions run holds $CACHE/.lock"

TMP=""
trap '[ -n "$TMP" ] && rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM

prepare() {  # suite -> CACHE/suite with bin/gdb, or a warning and status 1
  local s=$1 dest="$CACHE/$1" stage="$CACHE/.stage-$1" loader
  TMP=$(mktemp -d "${TMPDIR:-/tmp}/gdb-versions.XXXXXX") || die "mktemp failed"
  apt_private_setup "$TMP" amd64 "$s" || return 1
  # The whole dependency closure (the status file is empty): the suite's own libc and Python.
  if ! timeout -k 10 "$TMO" apt-get "${APT[@]}" -q -y --no-install-recommends --download-only \
       install "gdb/$s" "python3-pygments/$s" > "$TMP/dl.log" 2>&1; then
    warn "cannot download $s's gdb:"; grep -E '^(E|W):' "$TMP/dl.log" | sed 's/^/    /' >&2
    rm -rf "$TMP"; TMP=""; return 1
  fi
  rm -rf "$stage"; mkdir -p "$stage/root" "$stage/bin"
  for d in "$TMP"/cache/archives/*.deb; do
    dpkg-deb -x "$d" "$stage/root" || { warn "dpkg-deb -x $d failed"; rm -rf "$TMP" "$stage"; TMP=""; return 1; }
  done
  rm -rf "$TMP"; TMP=""
  rm -rf "$stage/root/usr/share/doc" "$stage/root/usr/share/man" "$stage/root/usr/share/locale"
  relative_symlinks "$stage/root"
  loader=$(cd "$stage/root" && find lib/x86_64-linux-gnu usr/lib/x86_64-linux-gnu -name 'ld-linux-x86-64.so.2' 2>/dev/null | head -n1)
  [ -n "$loader" ] || { warn "no loader in $s's libc6"; rm -rf "$stage"; return 1; }
  # The wrapper finds its tree relative to itself, so the cache can move. gdb's own relocation
  # sees the loader as its executable: the data directory is given explicitly.
  cat > "$stage/bin/gdb" <<WRAP
#!/bin/sh
R="\$(dirname "\$(readlink -f "\$0")")/../root"
exec "\$R/$loader" --library-path "\$R/lib/x86_64-linux-gnu:\$R/usr/lib/x86_64-linux-gnu" \\
  "\$R/usr/bin/gdb" --data-directory="\$R/usr/share/gdb" "\$@"
WRAP
  chmod +x "$stage/bin/gdb"
  "$stage/bin/gdb" -nx -batch -ex 'python import pygments' >/dev/null 2>&1 \
    || { warn "$s's gdb does not start: $("$stage/bin/gdb" -nx -batch 2>&1 | head -n2)"; rm -rf "$stage"; return 1; }
  touch "$stage/.complete"
  rm -rf "$dest" && mv "$stage" "$dest" || { warn "cannot move $stage to $dest"; return 1; }
  warn "prepared $s's $("$dest/bin/gdb" --version | head -n1)"
}

failed=()
for s in $SUITES; do
  [ -f "$CACHE/$s/.complete" ] || prepare "$s" || { failed+=("$s"); continue; }
  v=$("$CACHE/$s/bin/gdb" --version | head -n1 | awk '{print $NF}')
  echo "$s $v $CACHE/$s/bin"
done
[ ${#failed[@]} -eq 0 ] || { warn "FAILED: ${failed[*]} (the others are ready)"; exit 1; }
exit 0
