# Applies a cloud-init NoCloud seed to a root file system, the way cloud-init would on first boot,
# for the keys hostbroker's libvirt provider writes: hostname, users (name, shell, sudo, groups,
# lock_passwd, ssh_authorized_keys), disable_root with ssh_authorized_keys, and runcmd (run by
# init once sshd is up). Other keys are listed on the console as not applied. Busybox sh.

flat=${TMPDIR:-/tmp}/seed.flat
yaml_flat=${YAML_FLAT:-/yaml-flat.awk}
# get KEY: the value at KEY of the flattened user-data (empty when missing).
get() { awk -F '\t' -v k="$1" '$1 == k { print substr($0, length(k) + 2); exit }' "$flat"; }
# has PREFIX: whether any key starts with PREFIX.
has() { awk -F '\t' -v k="$1" 'index($1, k) == 1 { found = 1; exit } END { exit !found }' "$flat"; }
# list KEY: the items of a sequence at KEY, one a line (a scalar counts as a one-item list).
list() {
  awk -F '\t' -v k="$1" '$1 == k { print substr($0, length(k) + 2) } index($1, k ".") == 1 && substr($1, length(k) + 2) ~ /^[0-9]+$/ { print substr($0, length($1) + 2) }' "$flat"
}

# authorize ROOT USER KEY...: appends keys to USER's authorized_keys inside ROOT.
authorize() {
  r=$1 user=$2
  shift 2
  entry=$(awk -F: -v u="$user" '$1 == u { print $3 ":" $4 ":" $6 }' "$r/etc/passwd")
  [ -n "$entry" ] || { say "no user $user for its SSH keys"; return; }
  ids=${entry%:*} home=${entry##*:}
  mkdir -p "$r$home/.ssh"
  for key in "$@"; do printf '%s\n' "$key"; done >>"$r$home/.ssh/authorized_keys"
  chmod 700 "$r$home/.ssh" && chmod 600 "$r$home/.ssh/authorized_keys"
  chown -R "$ids" "$r$home/.ssh"
}

# add_user ROOT INDEX: creates users.INDEX (unless it exists) and applies its settings.
add_user() {
  r=$1 u=users.$2
  name=$(get "$u.name")
  [ -n "$name" ] || return 0
  if ! grep -q "^$name:" "$r/etc/passwd"; then
    id=$(awk -F: 'BEGIN { n = 1000 } FILENAME ~ /passwd$/ && $3 >= n && $3 < 60000 { n = $3 + 1 } FILENAME ~ /group$/ && $3 >= n && $3 < 60000 { n = $3 + 1 } END { print n }' "$r/etc/passwd" "$r/etc/group")
    shell=$(get "$u.shell")
    echo "$name:x:$id:$id::/home/$name:${shell:-/bin/bash}" >>"$r/etc/passwd"
    echo "$name:x:$id:" >>"$r/etc/group"
    # '*': no password, yet not locked, so key logins work whatever PAM says.
    echo "$name:*:19000:0:99999:7:::" >>"$r/etc/shadow"
    [ -f "$r/etc/gshadow" ] && echo "$name:!::" >>"$r/etc/gshadow"
    mkdir -p "$r/home/$name"
    cp -a "$r/etc/skel/." "$r/home/$name/" 2>/dev/null
    chown -R "$id:$id" "$r/home/$name"
    chmod 750 "$r/home/$name"
  fi
  for g in $(list "$u.groups" | tr ',' ' '); do
    awk -F: -v OFS=: -v g="$g" -v u="$name" '$1 == g && ("," $4 ",") !~ ("," u ",") { $4 = $4 == "" ? u : $4 "," u } { print }' \
      "$r/etc/group" >"$r/etc/group.hb" && mv "$r/etc/group.hb" "$r/etc/group"
  done
  sudo=$(list "$u.sudo")
  if [ -n "$sudo" ] && [ "$sudo" != false ]; then
    echo "$sudo" | while read -r rule; do echo "$name $rule"; done >"$r/etc/sudoers.d/90-cloud-init-$name"
    chmod 440 "$r/etc/sudoers.d/90-cloud-init-$name"
  fi
  keys=$(list "$u.ssh_authorized_keys")
  [ -z "$keys" ] || (IFS='
'
    set -f
    authorize "$r" "$name" $keys)
}

# apply_seed SEED_DIR ROOT
apply_seed() {
  seed=$1 r=$2
  awk -f "$yaml_flat" "$seed/user-data" >"$flat" 2>/dev/null || : >"$flat"
  host=$(get hostname)
  [ -n "$host" ] || host=$(awk -f "$yaml_flat" "$seed/meta-data" 2>/dev/null | awk -F '\t' '$1 == "local-hostname" { print $2; exit }')
  if [ -n "$host" ]; then
    hostname "$host"
    echo "$host" >"$r/etc/hostname"
    printf '127.0.0.1 localhost\n127.0.1.1 %s\n::1 localhost ip6-localhost ip6-loopback\n' "$host" >"$r/etc/hosts"
  fi
  i=0
  while has "users.$i"; do
    add_user "$r" $i
    i=$((i + 1))
  done
  keys=$(list ssh_authorized_keys)
  if [ "$(get disable_root)" = false ] && [ -n "$keys" ]; then
    (IFS='
'
      set -f
      authorize "$r" root $keys)
  fi
  # runcmd: each item a shell command, or a list of words run as they are.
  out=$r/usr/local/lib/hostbroker/runcmd
  echo '#!/bin/sh' >"$out"
  i=0
  while has "runcmd.$i"; do
    cmd=$(get "runcmd.$i")
    if [ -z "$cmd" ]; then
      cmd=$(list "runcmd.$i" | sed "s/'/'\\\\''/g; s/.*/'&'/" | tr '\n' ' ')
    fi
    echo "$cmd" >>"$out"
    i=$((i + 1))
  done
  chmod 755 "$out"
  ignored=$(awk -F '\t' 'NF > 1 { sub(/\..*/, "", $1); if ($1 !~ /^(hostname|fqdn|users|ssh_authorized_keys|disable_root|runcmd)$/ && !seen[$1]++) printf "%s ", $1 }' "$flat")
  [ -z "$ignored" ] || say "seed keys this image does not apply: $ignored"
  say "seed applied (hostname ${host:-unchanged})"
}
