# apt-private.sh - sourced by glibc-matrix.sh and gdb-versions.sh: apt on a private sources
# list, list dir and cache under a temp dir, so that packages of any Debian suite can be
# downloaded without root and without touching the machine's own apt setup.
#
# apt_private_setup TMP ARCHES SUITE...
#   writes TMP/sources.list for the suites (the archive URI read from this machine's own apt
#   sources), sets the array APT to the apt options that use it, and runs `apt-get update`
#   (its log in TMP/update.log). Returns 1 if no archive is found; needs die/warn and TMO.

apt_archive_uri() {
  # The archive URI, as this machine's apt sees it: the entry for the host's own suite.
  local codename uris uri
  codename=$(. /etc/os-release 2>/dev/null; echo "${VERSION_CODENAME:-}")
  uris=$(apt-get --print-uris update 2>/dev/null | sed -nE "s|^'([^']+)/dists/([^/']+)/InRelease'.*|\1/ \2|p")
  uri=$(echo "$uris" | awk -v c="$codename" 'c != "" && $2 == c {print $1; exit}')
  [ -n "$uri" ] || uri=$(echo "$uris" | awk '$2 ~ /^(buster|bullseye|bookworm|trixie|forky|duke|sid|stable|testing|unstable|oldstable)$/ {print $1; exit}')
  echo "$uri"
}

apt_private_setup() {
  local tmp=$1 arches=$2; shift 2
  local uri key opt s a rc
  uri=$(apt_archive_uri)
  [ -n "$uri" ] || { warn "no Debian archive found in this machine's apt sources (apt-get --print-uris update)"; return 1; }
  warn "archive: $uri (from the machine's apt sources)"
  mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/parts" "$tmp/prefs"
  key=/usr/share/keyrings/debian-archive-keyring.gpg
  opt="arch=$(echo $arches | tr ' ' ,)"; [ -r "$key" ] && opt="$opt signed-by=$key"
  declare -A seen=()
  : > "$tmp/sources.list"
  for s in "$@"; do
    [ -n "${seen[$s]:-}" ] && continue; seen[$s]=1
    echo "deb [$opt] $uri $s main" >> "$tmp/sources.list"
  done
  APT=(-o Dir::Etc::SourceList="$tmp/sources.list" -o Dir::Etc::SourceParts="$tmp/parts"
       -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts="$tmp/prefs"
       -o Dir::State::Lists="$tmp/lists" -o Dir::Cache="$tmp/cache" -o Dir::State::status=/dev/null
       -o Dir::Cache::pkgcache=pkgcache.bin -o Dir::Cache::srcpkgcache=   # docker images turn pkgcache off: 7 s per apt call
       -o Acquire::Languages=none -o APT::Sandbox::User=root -o Acquire::Retries=2
       -o Acquire::http::Timeout=30 -o Acquire::https::Timeout=30 -o Debug::NoLocking=1
       -o Acquire::Check-Valid-Until=false)  # a mirror's sid/experimental Release may be past its
                                            # Valid-Until; signatures are still checked
  for a in $arches; do APT+=(-o APT::Architectures::="$a"); done

  timeout -k 10 "$TMO" apt-get "${APT[@]}" -q update > "$tmp/update.log" 2>&1
  rc=$?
  { [ $rc -eq 124 ] || [ $rc -eq 137 ]; } && warn "apt-get update timed out after ${TMO}s"
  return 0
}

# Absolute symlinks in an unpacked tree (lib64/ld-linux-x86-64.so.2 -> /lib/...) would point
# at the host: make them relative to the tree.
relative_symlinks() {
  local root=$1 l t
  while IFS= read -r l; do
    t=$(readlink "$l"); ln -srfn "$root$t" "$l"
  done < <(find "$root" -type l -lname '/*')
}
