#!/usr/bin/env bash
# glibc-matrix.sh - prepare a cache of Debian glibc builds (loader, libs, debug info)
# so that test programs can be run and debugged under several glibc versions.
#
# Usage:  glibc-matrix.sh [CACHE_DIR]            (default: .cache/glibc)
# Prints one line per prepared glibc, on stdout (also saved as CACHE_DIR/matrix.txt):
#     VERSION LOADER_PATH LIBDIR DEBUGDIR
#   VERSION is the upstream glibc version ("2.31"; "2.31-i386" for i386), also the subdir name.
# Run a program under one:   LOADER_PATH --library-path LIBDIR ./prog
#   or bake it in:  gcc ... -Wl,--dynamic-linker=LOADER_PATH -Wl,-rpath,LIBDIR
#   or:             patchelf --set-interpreter LOADER_PATH --set-rpath LIBDIR ./prog
# Debug it:        gdb -ex 'set debug-file-directory DEBUGDIR' -ex 'set auto-load safe-path /' ./prog
#   (prog patched or linked as above: under `gdb --args LOADER_PATH ...` gdb never loads prog's symbols)
#   (a binary linked on a newer glibc needs GLIBC_2.34 and will not start on 2.31: build the
#    samples against the oldest sysroot, see GLIBC_MATRIX_DEV)
# Environment:
#   GLIBC_MATRIX_SUITES   Debian suites (default "bullseye bookworm trixie sid")
#   GLIBC_MATRIX_ARCHES   "amd64" (default), "i386" or "amd64 i386"
#   GLIBC_MATRIX_DEV=1    also unpack libc6-dev + linux-libc-dev: the subdir's root/ is then
#                         a sysroot to build against that glibc (SYSROOT= in its info file)
#   GLIBC_MATRIX_REFRESH=1  ask the archive again even for suites already cached
#   GLIBC_MATRIX_TIMEOUT  seconds allowed for each apt step (default 300)
#   GLIBC_MATRIX_EXTRA    more packages to unpack, "PKG[:ARCH]/SUITE ..." (e.g. the 32-bit libgcc
#                         "lib32gcc-12-dev/bookworm" for gcc -m32 without multilib): each one goes
#                         to CACHE_DIR/extra/PKG[:ARCH]_SUITE/ (the unpacked tree; ':' kept as given)
# Each subdir has info (key=value, paths relative to the subdir), links ld.so, lib, debug, and
# root/ (the unpacked packages, symlinks made relative): the cache can be moved as a whole.
# Cache hits need no network. The archive URI is read at run time from this machine's own
# apt sources (apt-get --print-uris update); apt runs on a private sources list, list dir and
# cache under a temp dir that is removed on exit: the machine's apt setup is not touched.
# Exit status: 0 all requested suites ready; 1 some suite failed (the others are still
# prepared and printed); 2 bad usage or environment.
set -uo pipefail

die()  { echo "glibc-matrix: error: $*" >&2; exit 2; }
warn() { echo "glibc-matrix: $*" >&2; }

[ $# -le 1 ] || die "usage: $0 [CACHE_DIR]"
CACHE=${1:-.cache/glibc}
SUITES=${GLIBC_MATRIX_SUITES:-bullseye bookworm trixie sid}
ARCHES=${GLIBC_MATRIX_ARCHES:-amd64}
DEV=${GLIBC_MATRIX_DEV:-0}
REFRESH=${GLIBC_MATRIX_REFRESH:-0}
TMO=${GLIBC_MATRIX_TIMEOUT:-300}
EXTRA=${GLIBC_MATRIX_EXTRA:-}

for t in apt-get apt-cache dpkg-deb timeout flock; do
  command -v "$t" >/dev/null || die "'$t' not found (needs a Debian/Ubuntu-style system)"
done
for a in $ARCHES; do
  case $a in amd64|i386) ;; *) die "unsupported arch '$a' (amd64, i386)";; esac
done

mkdir -p "$CACHE/.index" || die "cannot create $CACHE"
CACHE=$(cd "$CACHE" && pwd -P)
case $CACHE in *[[:space:]]*) die "the cache path must not contain white space: '$CACHE'";; esac
exec 9>"$CACHE/.lock"
flock -w "$TMO" 9 || die "another glibc-matrix run holds $CACHE/.lock"

. "$(dirname "$0")/apt-private.sh"

loader_name() { [ "$1" = i386 ] && echo ld-linux.so.2 || echo ld-linux-x86-64.so.2; }
triplet()     { [ "$1" = i386 ] && echo i386-linux-gnu || echo x86_64-linux-gnu; }
dirname_for() { [ "$2" = amd64 ] && echo "$1" || echo "$1-$2"; }   # upstream ver, arch
kv()          { sed -n "s/^$1=//p" "$2" 2>/dev/null | head -n1; }
usable()      { [ -f "$1/.complete" ] && { [ "$DEV" != 1 ] || [ -n "$(kv SYSROOT "$1/info")" ]; }; }

TMP=""; stage=""
cleanup() { [ -n "$TMP" ] && rm -rf "$TMP"; [ -n "$stage" ] && rm -rf "$stage"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

FAILED=()
declare -A RESULT=()   # "suite arch" -> dir name
declare -A CLAIMED=()  # dir name -> suite that filled it in this run

# ---- 1. cache hits (no network) -------------------------------------------------------
MISSING=()
for s in $SUITES; do for a in $ARCHES; do
  idx="$CACHE/.index/$s-$a"
  if [ "$REFRESH" != 1 ] && [ -f "$idx" ] && usable "$CACHE/$(cat "$idx")"; then
    RESULT["$s $a"]=$(cat "$idx")
  else
    MISSING+=("$s $a")
  fi
done; done

# ---- 2. fetch what is missing ---------------------------------------------------------
MISSING_EXTRA=()
for e in $EXTRA; do
  case $e in */*) ;; *) die "GLIBC_MATRIX_EXTRA: '$e' is not PKG[:ARCH]/SUITE";; esac
  [ "$REFRESH" != 1 ] && [ -f "$CACHE/extra/${e%/*}_${e#*/}/.complete" ] || MISSING_EXTRA+=("$e")
done

if [ ${#MISSING[@]} -gt 0 ] || [ ${#MISSING_EXTRA[@]} -gt 0 ]; then
  TMP=$(mktemp -d "${TMPDIR:-/tmp}/glibc-matrix.XXXXXX") || die "mktemp failed"
  mkdir -p "$TMP/debs"
  APT_ARCHES=$ARCHES   # the extras (lib32gcc-*) are amd64 packages, even for an i386-only run
  [ ${#MISSING_EXTRA[@]} -gt 0 ] && case " $APT_ARCHES " in *" amd64 "*) ;; *) APT_ARCHES="amd64 $APT_ARCHES";; esac
  suites=(); for m in "${MISSING[@]}"; do suites+=("${m% *}"); done
  for e in "${MISSING_EXTRA[@]}"; do suites+=("${e#*/}"); done
  apt_private_setup "$TMP" "$APT_ARCHES" "${suites[@]}" || exit 2

  for m in "${MISSING[@]}"; do
    s=${m% *}; a=${m#* }
    debver=$(apt-cache "${APT[@]}" show "libc6:$a/$s" 2>/dev/null | sed -n 's/^Version: //p' | head -n1)
    if [ -z "$debver" ]; then
      why=$(grep -E -A1 "^(Err|E:|W:).*[ /]${s}[ /]" "$TMP/update.log" | grep -v '^--' | head -n4 | sed 's/^/    /')
      warn "suite '$s' ($a): no libc6 through $URI (suite unreachable, unknown, or not verifiable)${why:+; apt said:
$why}"
      FAILED+=("$s/$a"); continue
    fi
    up=${debver%%-*}; up=${up#*:}
    name=$(dirname_for "$up" "$a")
    dest="$CACHE/$name"
    if usable "$dest"; then
      have=$(kv DEB_VERSION "$dest/info")
      # same upstream version already here: keep it unless a refresh was asked for
      # (and never replace one prepared earlier in this same run, e.g. forky == sid)
      if [ "$have" = "$debver" ] || [ "$REFRESH" != 1 ] || [ -n "${CLAIMED[$name]:-}" ]; then
        [ "$have" = "$debver" ] || warn "glibc $name: keeping $have ($(kv SUITE "$dest/info")) for $s, which has $debver"
        echo "$name" > "$CACHE/.index/$s-$a"; RESULT["$s $a"]=$name; continue
      fi
    fi
    pkgs=("libc6:$a/$s" "libc6-dbg:$a/$s")
    if [ "$DEV" = 1 ]; then
      pkgs+=("libc6-dev:$a/$s")
      # linux-libc-dev is per-arch up to bookworm, Architecture: all from trixie on
      if apt-cache "${APT[@]}" show "linux-libc-dev:$a/$s" 2>/dev/null | grep -x "Architecture: $a" >/dev/null; then  # not -q: with pipefail, SIGPIPE would fail it
        pkgs+=("linux-libc-dev:$a/$s")
      else pkgs+=("linux-libc-dev/$s"); fi
    fi
    dl="$TMP/debs/$s-$a"; mkdir -p "$dl"
    if ! (cd "$dl" && timeout -k 10 "$TMO" apt-get "${APT[@]}" -q download "${pkgs[@]}") > "$TMP/dl.log" 2>&1; then
      warn "download failed for $s ($a):"; sed 's/^/    /' "$TMP/dl.log" | grep -vE '^    Get:' >&2
      FAILED+=("$s/$a"); continue
    fi

    # ---- 3. unpack into CACHE/<version>/root, atomically --------------------------------
    stage="$CACHE/.stage-$name"; rm -rf "$stage"; mkdir -p "$stage/root"
    ok=1
    for d in "$dl"/*.deb; do dpkg-deb -x "$d" "$stage/root" || { warn "dpkg-deb -x $d failed"; ok=0; }; done
    [ $ok = 1 ] || { FAILED+=("$s/$a"); rm -rf "$stage"; continue; }
    rm -rf "$stage/root/usr/share/doc" "$stage/root/usr/share/lintian" "$stage/root/usr/share/man"
    relative_symlinks "$stage/root"
    tri=$(triplet "$a")
    libc=$(find "$stage/root" -path "*/debug/*" -prune -o -path "*/$tri/libc.so.6" -print | awk '{print length, $0}' | sort -n | head -n1 | cut -d' ' -f2-)
    [ -n "$libc" ] || { warn "no libc.so.6 in the $s ($a) packages"; FAILED+=("$s/$a"); rm -rf "$stage"; continue; }
    rel_lib=$(dirname "${libc#"$stage"/}")
    rel_ld="$rel_lib/$(loader_name "$a")"
    [ -e "$stage/$rel_ld" ] || { warn "no $(loader_name "$a") beside $libc"; FAILED+=("$s/$a"); rm -rf "$stage"; continue; }
    bid=""
    if command -v readelf >/dev/null; then
      bid=$(readelf -n "$(readlink -f "$libc")" 2>/dev/null | awk '/Build ID/ {print $3}')
      if [ -n "$bid" ] && [ ! -f "$stage/root/usr/lib/debug/.build-id/${bid:0:2}/${bid:2}.debug" ]; then
        warn "libc6-dbg of $s ($a) has no debug file for libc build-id $bid"; FAILED+=("$s/$a"); rm -rf "$stage"; continue
      fi
    fi
    ln -s "$rel_lib" "$stage/lib"; ln -s "$rel_ld" "$stage/ld.so"; ln -s root/usr/lib/debug "$stage/debug"
    {
      echo "VERSION=$name"; echo "DEB_VERSION=$debver"; echo "SUITE=$s"; echo "ARCH=$a"
      echo "PACKAGES=$(cd "$dl" && ls -- *.deb | tr '\n' ' ')"
      # paths relative to this subdir, so that the cache can be moved or restored elsewhere
      echo "LOADER=$rel_ld"; echo "LIBDIR=$rel_lib"; echo "DEBUGDIR=root/usr/lib/debug"
      [ "$DEV" = 1 ] && echo "SYSROOT=root"
      echo "LIBC_BUILD_ID=$bid"; echo "PREPARED=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    } > "$stage/info"
    touch "$stage/.complete"
    rm -rf "$dest" && mv "$stage" "$dest" || { warn "cannot move $stage to $dest"; FAILED+=("$s/$a"); continue; }
    stage=""
    rm -rf "$dl"
    echo "$name" > "$CACHE/.index/$s-$a"; RESULT["$s $a"]=$name
    CLAIMED[$name]=$s
    warn "prepared glibc $name ($debver from $s, $a)"
  done

  # ---- 3b. extra packages, each unpacked on its own ------------------------------------
  for e in "${MISSING_EXTRA[@]}"; do
    dest="$CACHE/extra/${e%/*}_${e#*/}"; dl="$TMP/debs/extra"; rm -rf "$dl"; mkdir -p "$dl"
    if ! (cd "$dl" && timeout -k 10 "$TMO" apt-get "${APT[@]}" -q download "$e") > "$TMP/dl.log" 2>&1; then
      warn "download failed for extra package $e:"; sed 's/^/    /' "$TMP/dl.log" | grep -vE '^    Get:' >&2
      FAILED+=("$e"); continue
    fi
    stage="$CACHE/.stage-extra"; rm -rf "$stage"; mkdir -p "$stage"
    if ! dpkg-deb -x "$dl"/*.deb "$stage"; then warn "dpkg-deb -x failed for $e"; FAILED+=("$e"); continue; fi
    relative_symlinks "$stage"
    echo "PACKAGE=$(cd "$dl" && ls -- *.deb)" > "$stage/.info"; touch "$stage/.complete"
    mkdir -p "$CACHE/extra"; rm -rf "$dest" && mv "$stage" "$dest" || { warn "cannot move $stage to $dest"; FAILED+=("$e"); continue; }
    stage=""
    warn "prepared extra package $e"
  done
fi

# ---- 4. report ------------------------------------------------------------------------
: > "$CACHE/matrix.txt.new"
declare -A printed=()
for s in $SUITES; do for a in $ARCHES; do
  name=${RESULT["$s $a"]:-}; [ -n "$name" ] || continue
  [ -n "${printed[$name]:-}" ] && continue; printed[$name]=1
  i="$CACHE/$name/info"
  d="$CACHE/$name"
  echo "$name $d/$(kv LOADER "$i") $d/$(kv LIBDIR "$i") $d/$(kv DEBUGDIR "$i")" | tee -a "$CACHE/matrix.txt.new"
done; done
mv "$CACHE/matrix.txt.new" "$CACHE/matrix.txt"

if [ ${#FAILED[@]} -gt 0 ]; then
  warn "FAILED: ${FAILED[*]} (the other suites are ready)"
  exit 1
fi
exit 0
