#!/usr/bin/env bash
# The fresh-machine check: builds a bare Debian 12 (bookworm) root with
# debootstrap (minbase: Essential packages and apt, nothing else), copies the
# committed tree of this repository (HEAD, as a clean clone has it) into it and
# runs the README's two commands there, read from README.md itself (its first
# two ```sh blocks), in a chroot with /proc, /sys and /dev mounted. Every mount is
# undone at the end, on success, failure and interruption, and the root removed.
# Needs root, debootstrap (installed when missing), the network (Debian's mirror
# and PyPI). Fetches are retried; a failure names the stage that failed.
#
# Settings (environment):
#   FRESH_ROOT_MIRROR   Debian mirror (default: the one this machine's apt uses)
#   FRESH_ROOT_DIR      where the root is made (default /var/tmp; needs ~10 GB)
#   FRESH_ROOT_CACHE    downloads kept between runs: .debs of debootstrap and of
#                       apt in the root, pip's cache (default
#                       /var/cache/moddit-fresh-root; "none" keeps nothing)
#   FRESH_ROOT_KEEP=1   leave the root in place (mounts are undone all the same)
#   MODDIT_JOBS         passed on to the commands (default: all cores)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
suite=bookworm

say() { echo "fresh-root: $*"; }
die() { echo "fresh-root: FAILED: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot and mount need it)"
command -v git >/dev/null || die "git is needed to take the committed tree of $repo"

# ---- settings ----------------------------------------------------------------

# The first http(s) URI this machine's apt uses for `suite` (one-line and deb822
# formats), or nothing.
host_mirror() {
  local want="$1" f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk -v s="$want" '$1 == "deb" { i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                      if ($(i + 1) == s) { print $i; exit } }' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v s="$want" 'BEGIN { RS = ""; FS = "\n" }
      { deb = 0; uri = ""; hit = 0
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^Types:/ && $i ~ /[ \t]deb([ \t]|$)/) deb = 1
          if ($i ~ /^URIs:/) { split($i, u, /[ \t]+/); uri = u[2] }
          if ($i ~ /^Suites:/) { n = split($i, w, /[ \t]+/); for (k = 2; k <= n; k++) if (w[k] == s) hit = 1 }
        }
        if (deb && hit && uri != "") { print uri; exit } }' "$f"
  done
}

mirror="${FRESH_ROOT_MIRROR:-$(host_mirror "$suite" | grep -E '^https?://' | head -n1 || true)}"
mirror="${mirror:-http://deb.debian.org/debian}"
security="$(host_mirror "$suite-security" | grep -E '^https?://' | head -n1 || true)"
cache="${FRESH_ROOT_CACHE:-/var/cache/moddit-fresh-root}"
[ "$cache" = none ] && cache=""
parent="${FRESH_ROOT_DIR:-/var/tmp}"
mkdir -p "$parent"
jobs="${MODDIT_JOBS:-$(nproc)}"

mapfile -t readme_cmds < <(awk '/^```sh[ \t]*$/ { inside = 1; n++; cmd = ""; next }
                               /^```/ && inside { inside = 0; print cmd; if (n == 2) exit; next }
                               inside { cmd = cmd (cmd == "" ? "" : "\n") $0 }' "$repo/README.md")
((${#readme_cmds[@]} == 2)) && [[ "${readme_cmds[0]}" == *bootstrap.sh* ]] &&
  [[ "${readme_cmds[1]}" == *scripts/test.sh* ]] ||
  die "README.md's first two \`\`\`sh blocks are not the build command (with bootstrap.sh)" \
      "and the test command (scripts/test.sh)"

commit="$(git -C "$repo" rev-parse HEAD)"
if [ -n "$(git -C "$repo" status --porcelain --untracked-files=no)" ]; then
  say "note: $repo has uncommitted changes; the check runs the committed tree only"
fi
free_kb="$(df -Pk "$parent" | awk 'NR == 2 { print $4 }')"
((free_kb > 10 * 1024 * 1024)) ||
  die "$parent has $((free_kb / 1024 / 1024)) GB free; the root needs ~10 GB (set FRESH_ROOT_DIR)"

# ---- cleanup: every mount undone, on any exit ----------------------------------

times=()      # "<seconds>  <stage>" of the stages done
root=""
child=""      # the long command now running (a session leader: its id is its group's id)
stage_name="setup"

mounts_under() {  # mount points at or below $1, deepest first
  awk -v r="$1" '$5 == r || index($5, r "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r
}

kill_root_processes() {  # kill_root_processes <root>: every process whose / is <root>
  local r="$1" sig pid p left
  for sig in TERM KILL; do
    left=0
    for p in /proc/[0-9]*; do
      pid="${p#/proc/}"
      [ "$(readlink "$p/root" 2>/dev/null)" = "$r" ] || continue
      kill "-$sig" "$pid" 2>/dev/null || true
      left=1
    done
    ((left)) || return 0
    sleep 3
  done
}

# undo_root <root> <keep>: ends the processes inside <root>, undoes every mount
# under it (deepest first: the bind of /dev, /proc, /sys, the caches, and any
# that debootstrap left), then removes it unless <keep> is 1. Fails, keeping
# the root, if a mount stays.
undo_root() {
  local r="$1" keep="$2" m left
  kill_root_processes "$r"
  for m in $(mounts_under "$r"); do
    umount "$m" 2>/dev/null || { sleep 2; umount "$m" 2>/dev/null; } ||
      { say "'$m' is busy; detaching it (umount -l)"; umount -l "$m"; }
  done
  left="$(mounts_under "$r")"
  if [ -n "$left" ]; then
    echo "fresh-root: FAILED to undo these mounts (the root $r is kept): $(echo $left)" >&2
    return 1
  fi
  rm -f "$r.debootstrap.log"
  if [ "$keep" = 1 ]; then
    say "root kept at $r (every mount undone)"
    echo kept >"$r.owner"
  else
    rm -rf --one-file-system "$r" && rm -f "$r.owner"
  fi
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  set +e
  [ -n "$child" ] && kill -TERM -- "-$child" 2>/dev/null
  if [ -n "$root" ]; then
    undo_root "$root" "${FRESH_ROOT_KEEP:-0}" || rc=1
  fi
  if ((rc != 0)); then
    ((${#times[@]} == 0)) || { say "stages done before the failure:"; printf '  %s\n' "${times[@]}"; }
    echo "fresh-root: FAILED in stage '$stage_name' (exit $rc); commit $commit, mirror $mirror" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM HUP

# A run killed outright (SIGKILL: no trap runs) leaves its root mounted, with
# its build perhaps still running: its owner file names a process that is gone.
for old in "$parent"/moddit-fresh-root.*; do
  [ -d "$old" ] || continue
  owner="$(cat "$old.owner" 2>/dev/null || true)"
  [ "$owner" = kept ] && continue
  if [ -n "$owner" ] && kill -0 "$owner" 2>/dev/null; then continue; fi
  say "undoing $old, left by a run that was killed"
  undo_root "$old" 0 || die "could not undo the mounts of $old (left by a killed run)"
done

do_mount() {  # do_mount <target> <mount arguments...>
  local target="$1"
  shift
  mkdir -p "$target"
  mount "$@" "$target" || die "mount $* $target"
}

# ---- stages --------------------------------------------------------------------

stage() {  # stage "<name>" command...: runs it, times it, names it on failure
  stage_name="$1"
  shift
  local t0=$SECONDS
  say "== $stage_name"
  "$@"
  times+=("$(printf '%5d s  %s' $((SECONDS - t0)) "$stage_name")")
}

retry() {  # retry <what> command...: 3 attempts, a pause between them
  local what="$1" attempt
  shift
  for attempt in 1 2 3; do
    "$@" && return 0
    ((attempt < 3)) || break
    say "$what failed (attempt $attempt of 3); retrying in $((attempt * 20)) s"
    sleep $((attempt * 20))
  done
  die "$what failed after 3 attempts"
}

# in_session [--log FILE] <command...>: runs it in a session of its own (its
# output to FILE) and waits for it. Bash runs a trap only once its foreground
# command has ended; a command waited for in the background lets an
# interruption stop it at once (the trap ends its whole group).
in_session() {
  if [ "$1" = --log ]; then
    local log="$2"
    shift 2
    setsid "$@" >"$log" 2>&1 &
  else
    setsid "$@" &
  fi
  child=$!
  local rc=0
  wait "$child" || rc=$?
  child=""
  return "$rc"
}

install_debootstrap() {
  command -v debootstrap >/dev/null && return 0
  export DEBIAN_FRONTEND=noninteractive
  retry "apt-get install debootstrap" sh -c \
    'apt-get -o Acquire::Retries=3 update -qq && apt-get -o Acquire::Retries=3 install -y -qq debootstrap'
}

make_root() {
  local args=(--variant=minbase)
  if [ -n "$cache" ]; then
    mkdir -p "$cache/debootstrap"
    args+=(--cache-dir="$cache/debootstrap")
  fi
  local attempt
  for attempt in 1 2 3; do
    if in_session --log "$root.debootstrap.log" debootstrap "${args[@]}" "$suite" "$root" "$mirror"; then
      rm -f "$root.debootstrap.log"
      return 0
    fi
    say "debootstrap failed (attempt $attempt of 3); its log ends with:"
    tail -n 15 "$root.debootstrap.log" | sed 's/^/    /'
    undo_root "$root" 0 || die "debootstrap left mounts under $root"
    mkdir -p "$root" && chmod 755 "$root" && echo $$ >"$root.owner"
    ((attempt < 3)) && sleep $((attempt * 20))
  done
  rm -f "$root.debootstrap.log"
  die "debootstrap of Debian $suite from $mirror failed after 3 attempts"
}

configure_root() {
  {
    echo "deb $mirror $suite main"
    echo "deb $mirror $suite-updates main"
    [ -n "$security" ] && echo "deb $security $suite-security main"
  } >"$root/etc/apt/sources.list"
  cp -L /etc/resolv.conf "$root/etc/resolv.conf"
  # The network's own CA certificates, like its resolver: where HTTPS goes
  # through an intercepting proxy, pip in the root needs the CA this machine
  # trusts for it (ca-certificates, installed by bootstrap.sh, adds these).
  local extra=(/usr/local/share/ca-certificates/*)
  if [ -e "${extra[0]}" ]; then
    say "copying this machine's ${#extra[@]} local CA certificate(s) (/usr/local/share/ca-certificates) into the root"
    mkdir -p "$root/usr/local/share/ca-certificates"
    cp -rL /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/"
  fi
  # No daemons start inside the root when packages are installed.
  printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
  chmod +x "$root/usr/sbin/policy-rc.d"
  mkdir -p "$root/root/moddit"
  git -C "$repo" archive --format=tar "$commit" | tar -x -C "$root/root/moddit" ||
    die "could not copy commit $commit of $repo into the root"
  do_mount "$root/proc" -t proc proc
  do_mount "$root/sys" -t sysfs -o ro sysfs
  do_mount "$root/dev" --rbind /dev
  mount --make-rslave "$root/dev"  # nothing mounted or unmounted here reaches the host
  if [ -n "$cache" ]; then
    mkdir -p "$cache/apt" "$cache/pip"
    do_mount "$root/var/cache/apt/archives" --bind "$cache/apt"
    do_mount "$root/root/.cache/pip" --bind "$cache/pip"
  fi
}

in_root() {  # in_root "<shell command>": runs it in the root, in /root/moddit
  local rc=0
  in_session chroot "$root" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LANG=C.UTF-8 TERM=dumb DEBIAN_FRONTEND=noninteractive MODDIT_JOBS="$jobs" \
    /bin/bash -c "set -e; cd /root/moddit; $1" || rc=$?
  ((rc == 0)) || die "'$1' exited with status $rc inside the fresh root"
}

say "Debian $suite from $mirror; commit $commit; $(nproc) cores; cache ${cache:-none}"
stage "debootstrap (installed on this machine when missing)" install_debootstrap
root="$(realpath "$(mktemp -d "$parent/moddit-fresh-root.XXXXXX")")"
chmod 755 "$root"  # a machine's / (mktemp makes 0700, which locks apt's _apt user out)
echo $$ >"$root.owner"
stage "debootstrap --variant=minbase $suite into $root" make_root
stage "configure the root, copy the repository, mount /proc /sys /dev" configure_root
stage "README build command: ${readme_cmds[0]}" in_root "${readme_cmds[0]}"
stage "README test command: ${readme_cmds[1]}" in_root "${readme_cmds[1]}"
stage_name="cleanup"
say "passed; times:"
printf '  %s\n' "${times[@]}"
