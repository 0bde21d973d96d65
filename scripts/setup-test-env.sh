#!/usr/bin/env bash
# Prepares a machine for hostbroker's integration tests (see docs/providers/container.md):
#   - installs sshd, Podman (with runc), busybox, debootstrap, libvirt, ansible-core and tools, when missing;
#   - writes /etc/containers/containers.conf (runc; ulimits a sandbox allows);
#   - starts Podman's Docker-compatible API service on the standard socket;
#   - builds the local test images localhost/hostbroker-busybox:latest and
#     localhost/hostbroker-sshd:bookworm (no registry is needed).
# Idempotent: every step checks first, so a second run takes seconds. CI runs it as root on a
# fresh Debian 12 machine; a developer can run it the same way (sudo).
#
# Environment:
#   HOSTBROKER_CACHE      where the debootstrap root file system tarball is kept
#                         (default /var/cache/hostbroker)
#   HOSTBROKER_REBUILD=1  rebuild the images even when they exist (the sshd image is also rebuilt
#                         by itself when its recipe below changes)
set -euo pipefail

say() { printf '[setup-test-env] %s\n' "$*"; }
die() { printf '[setup-test-env] error: %s\n' "$*" >&2; exit 1; }

if [ "$(id -u)" -ne 0 ]; then
  die "run this as root (e.g. sudo $0): it installs packages, writes /etc/containers/containers.conf and serves /run/podman/podman.sock."
fi

CACHE="${HOSTBROKER_CACHE:-/var/cache/hostbroker}"
SOCKET=/run/podman/podman.sock
BUSYBOX_IMAGE=localhost/hostbroker-busybox:latest
SSHD_IMAGE=localhost/hostbroker-sshd:bookworm
SUITE=bookworm
# What the sshd image holds beyond minbase: full python3 (Ansible modules import shutil and more,
# which python3-minimal lacks), sudo (Ansible `become`), rsync (the remote end of `rsync -e ssh`).
SSHD_IMAGE_PACKAGES=openssh-server,python3,sudo,tar,rsync
# A non-root login with passwordless sudo, for tests of `become` and of non-root SSH users.
SSHD_IMAGE_USER=tester

# 1. Packages -------------------------------------------------------------------------------
# ansible-core and rsync: test/clients/ runs real playbooks and `rsync -e ssh` against every kind of host.
# etcd-server/etcd-client: the team-mode store's tests start their own 3-node cluster on loopback.
# chromium: the dashboard's browser tests (driven by playwright-core, never a downloaded browser).
# qemu-system-x86 and libvirt-daemon-system: real guests under libvirtd (TCG; no KVM here).
PACKAGES=(openssh-server openssh-client rsync podman runc busybox-static debootstrap
  libvirt-dev libvirt-clients libvirt-daemon libvirt-daemon-system qemu-system-x86 pkg-config
  iproute2 dpkg-dev curl genisoimage iptables ansible-core etcd-server etcd-client chromium)
# openssl: test/http/ makes its CA and server certificates with the CLI.
PACKAGES+=(openssl)
# qemu-utils, cpio, kmod: scripts/build-guest-image.sh (the libvirt tests' guest).
PACKAGES+=(qemu-utils cpio kmod)
missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  say "packages: all present"
fi

# 2. containers.conf ------------------------------------------------------------------------
# crun fails in this kind of sandbox (cgroups in hybrid mode) and the default ulimits cannot be
# set here; runc and modest ulimits work.
CONF=/etc/containers/containers.conf
MARKER='# written by hostbroker scripts/setup-test-env.sh'
WANT="$MARKER
[containers]
default_ulimits = [\"nofile=1024:1024\", \"nproc=4096:4096\"]

[engine]
runtime = \"runc\""
if [ -f "$CONF" ] && ! grep -qF "$MARKER" "$CONF"; then
  say "containers.conf: $CONF exists and was not written by this script; left alone (it needs runtime = \"runc\" and default_ulimits as in docs/providers/container.md)"
elif [ "$(cat "$CONF" 2>/dev/null)" != "$WANT" ]; then
  mkdir -p /etc/containers
  printf '%s\n' "$WANT" >"$CONF"
  say "containers.conf: written ($CONF)"
else
  say "containers.conf: up to date"
fi

# 3. The API service --------------------------------------------------------------------------
ping_socket() { curl -sf --max-time 2 --unix-socket "$SOCKET" http://d/_ping >/dev/null 2>&1; }
if ping_socket; then
  say "podman service: answering at unix://$SOCKET"
else
  mkdir -p "$(dirname "$SOCKET")" /var/log
  rm -f "$SOCKET"
  # setsid + nohup: the service outlives this script and the CI step that ran it.
  setsid nohup podman system service --time=0 "unix://$SOCKET" >/var/log/hostbroker-podman-service.log 2>&1 </dev/null &
  for _ in $(seq 1 100); do
    ping_socket && break
    sleep 0.1
  done
  ping_socket || die "podman system service did not answer at $SOCKET within 10 s; see /var/log/hostbroker-podman-service.log"
  say "podman service: started at unix://$SOCKET (log: /var/log/hostbroker-podman-service.log)"
fi

image_exists() { [ "${HOSTBROKER_REBUILD:-0}" != 1 ] && podman image exists "$1"; }

# 4. busybox image ----------------------------------------------------------------------------
if image_exists "$BUSYBOX_IMAGE"; then
  say "image $BUSYBOX_IMAGE: present"
else
  dir=$(mktemp -d)
  trap 'rm -rf "$dir"' EXIT
  mkdir -p "$dir/bin" "$dir/etc" "$dir/root" "$dir/tmp" "$dir/proc" "$dir/sys" "$dir/dev" "$dir/run" "$dir/var/tmp"
  chmod 1777 "$dir/tmp" "$dir/var/tmp"
  cp /bin/busybox "$dir/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$dir/bin/$applet"
  done
  mkdir -p "$dir/usr"
  ln -s ../bin "$dir/usr/bin"
  ln -s bin "$dir/sbin"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$dir/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$dir/etc/group"
  # The default command keeps the container alive for exec sessions; `sleep` as PID 1 ignores
  # TERM, which is fine: hostbroker removes containers with force (KILL).
  tar -C "$dir" -c . | podman import --quiet \
    --change 'CMD ["/bin/sleep", "2147483647"]' \
    --change 'ENV PATH=/bin:/usr/bin:/sbin' \
    - "$BUSYBOX_IMAGE" >/dev/null
  rm -rf "$dir"
  trap - EXIT
  say "image $BUSYBOX_IMAGE: built"
fi

# 5. Debian image with sshd -------------------------------------------------------------------
# The root file system: minbase plus the packages, and the login user with passwordless sudo.
rootfs_setup() {
  local root=$1
  chroot "$root" useradd --create-home --shell /bin/bash "$SSHD_IMAGE_USER"
  # '*': no password, but not locked, so key logins work whatever sshd's PAM setting.
  chroot "$root" usermod -p '*' "$SSHD_IMAGE_USER"
  printf '%s ALL=(ALL) NOPASSWD:ALL\n' "$SSHD_IMAGE_USER" >"$root/etc/sudoers.d/$SSHD_IMAGE_USER"
  chmod 0440 "$root/etc/sudoers.d/$SSHD_IMAGE_USER"
}
# The command: take the public key from HOSTBROKER_AUTHORIZED_KEY (when set; written aside and renamed,
# since hostbroker may put the same file in through the archive API at the same instant, and
# either copy will do); serve the ed25519
# host key hostbroker put in before the start (so the key it pinned is the only one offered), or
# make host keys when run without hostbroker; run sshd in the foreground logging to stderr.
start='mkdir -p /run/sshd /root/.ssh && chmod 700 /root/.ssh && if [ -n "$HOSTBROKER_AUTHORIZED_KEY" ]; then (umask 077 && printf "%s\n" "$HOSTBROKER_AUTHORIZED_KEY" > /root/.ssh/authorized_keys.hb && mv -f /root/.ssh/authorized_keys.hb /root/.ssh/authorized_keys) || true; fi && if [ -s /etc/ssh/ssh_host_ed25519_key ]; then exec /usr/sbin/sshd -D -e -h /etc/ssh/ssh_host_ed25519_key; else ssh-keygen -A >/dev/null && exec /usr/sbin/sshd -D -e; fi'
# The image and the cached root file system are named by a hash of what makes them, so a change
# to the packages, the user set-up or the command rebuilds them on the next run.
RECIPE_LABEL=io.hostbroker.recipe
rootfs_key=$(printf '%s\n' "$SUITE" "$SSHD_IMAGE_PACKAGES" "$SSHD_IMAGE_USER" "$(declare -f rootfs_setup)" | sha256sum | cut -c1-12)
image_key=$(printf '%s\n' "$rootfs_key" "$start" | sha256sum | cut -c1-12)
image_recipe() { podman image inspect --format "{{ index .Labels \"$RECIPE_LABEL\" }}" "$1" 2>/dev/null || true; }
if image_exists "$SSHD_IMAGE" && [ "$(image_recipe "$SSHD_IMAGE")" = "$image_key" ]; then
  say "image $SSHD_IMAGE: present"
else
  rootfs_tar="$CACHE/$SUITE-sshd-rootfs-$rootfs_key.tar"
  if [ ! -s "$rootfs_tar" ]; then
    mkdir -p "$CACHE"
    root=$(mktemp -d)
    trap 'rm -rf "$root"' EXIT
    say "debootstrap $SUITE (minbase + $SSHD_IMAGE_PACKAGES): about 90 s, once; cached in $rootfs_tar"
    debootstrap --variant=minbase --include="$SSHD_IMAGE_PACKAGES" "$SUITE" "$root" >"$CACHE/debootstrap.log" 2>&1 \
      || die "debootstrap failed; see $CACHE/debootstrap.log"
    rootfs_setup "$root"
    # Host keys are never baked into the image: hostbroker puts one in per container.
    rm -f "$root"/etc/ssh/ssh_host_*
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -cf "$rootfs_tar.tmp" . && mv -f "$rootfs_tar.tmp" "$rootfs_tar"
    rm -rf "$root"
    trap - EXIT
  else
    say "debootstrap: using cached $rootfs_tar"
  fi
  json=${start//\\/\\\\}
  json=${json//\"/\\\"}
  podman import --quiet \
    --change "CMD [\"/bin/sh\", \"-c\", \"$json\"]" \
    --change 'EXPOSE 22' \
    --change "LABEL $RECIPE_LABEL=$image_key" \
    --change "LABEL io.hostbroker.packages=$SSHD_IMAGE_PACKAGES" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$rootfs_tar" "$SSHD_IMAGE" >/dev/null
  say "image $SSHD_IMAGE: built (recipe $image_key)"
fi

# Keystone ------------------------------------------------------------------------------------
# python3-keystone: test/fidelity/keystone.test.ts runs a real Keystone (SQLite, fernet tokens,
# keystone-manage bootstrap, keystone-wsgi-public on loopback); the test writes its own config, so
# only the package is needed. Its own function so the package list above stays as it was.
install_keystone() {
  if dpkg-query -W -f='${Status}' python3-keystone 2>/dev/null | grep -q 'install ok installed'; then
    say "keystone: present"
    return
  fi
  say "installing: python3-keystone"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends python3-keystone >/dev/null 2>&1 || {
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends python3-keystone >/dev/null
  }
}
install_keystone
# 6. Guest image for the libvirt provider's real-hypervisor tests (kernel, initramfs, qcow2 root).
# /dev/kvm as udev makes it (group kvm, which libvirt-qemu is in): a root-only node makes libvirtd
# probe QEMU as root with KVM, then find KVM unusable as libvirt-qemu and probe again at every
# domain define (~45 s each under load). The tests still use TCG (domainType: qemu).
if [ -c /dev/kvm ] && getent group kvm >/dev/null; then chgrp kvm /dev/kvm && chmod 660 /dev/kvm; fi
HOSTBROKER_CACHE="$CACHE" "$(dirname "$0")/build-guest-image.sh" "$CACHE/$SUITE-sshd-rootfs-$rootfs_key.tar"

say "ready: DOCKER_HOST=unix://$SOCKET (found by hostbroker's engine discovery without setting it)"
