#!/usr/bin/env bash
# Builds the test guest for the libvirt provider's real-hypervisor tests (docs/providers/libvirt.md),
# from Debian packages only (no image registry):
#   vmlinuz      Debian's cloud kernel (apt-get download linux-image-cloud-amd64's kernel package);
#   initrd.img   busybox-static and the virtio (disk, network, SCSI CD-ROM) and ISO 9660 modules:
#                it mounts the root disk, brings the network up by DHCP (QEMU's user-mode network
#                answers), applies the cloud-init NoCloud seed the provider writes (hostname, users,
#                sudo, SSH keys, runcmd) to the root, and hands over to busybox init;
#   rootfs.qcow2 the debootstrap root file system with sshd that setup-test-env.sh caches, with
#                busybox init (no systemd) running sshd directly.
# The guest's own files are in scripts/guest-image/.
# Boot it directly: kernel and initrd in the domain XML, with the kernel command line in `cmdline`.
# Built once into $HOSTBROKER_CACHE/guest-<recipe hash>/ (a change to this script or to the root
# file system rebuilds it); $HOSTBROKER_CACHE/guest-image links to the current one.
#
# Usage (as root): build-guest-image.sh [ROOTFS_TAR]
#   ROOTFS_TAR  the debootstrap tarball (default: the newest $HOSTBROKER_CACHE/bookworm-sshd-rootfs-*.tar;
#               debootstrapped here when there is none)
# Environment: HOSTBROKER_CACHE (default /var/cache/hostbroker), HOSTBROKER_REBUILD=1 (rebuild anyway).
set -euo pipefail

say() { printf '[build-guest-image] %s\n' "$*"; }
die() { printf '[build-guest-image] error: %s\n' "$*" >&2; exit 1; }

CACHE="${HOSTBROKER_CACHE:-/var/cache/hostbroker}"
here=$(cd "$(dirname "$0")" && pwd)/guest-image
[ "$(id -u)" -eq 0 ] || die "run this as root: it writes $CACHE and builds files owned by root inside the image."
ROOTFS_TAR="${1:-$(ls -t "$CACHE"/bookworm-sshd-rootfs-*.tar 2>/dev/null | head -n1 || true)}"
# Guest modules, loaded in this order with their dependencies first (modprobe --show-depends).
MODULES=(virtio_pci virtio_blk virtio_net virtio_scsi sr_mod isofs virtio_rng)
PACKAGES=(openssh-server python3 sudo tar rsync)
CMDLINE='console=ttyS0 root=/dev/vda rw quiet loglevel=3 mitigations=off nokaslr'

for tool in qemu-img mkfs.ext4 cpio dpkg-deb depmod modprobe apt-get; do
  command -v "$tool" >/dev/null || die "$tool is missing; run scripts/setup-test-env.sh (it installs qemu-system-x86, e2fsprogs, cpio, dpkg-dev, kmod)."
done
[ -x /bin/busybox ] || die "/bin/busybox is missing: apt-get install busybox-static"

if [ -z "$ROOTFS_TAR" ] || [ ! -s "$ROOTFS_TAR" ]; then
  ROOTFS_TAR="$CACHE/bookworm-guest-rootfs.tar"
  if [ ! -s "$ROOTFS_TAR" ]; then
    say "no cached root file system: debootstrap bookworm (minbase), about 90 s, once"
    root=$(mktemp -d)
    trap 'rm -rf "$root"' EXIT
    debootstrap --variant=minbase --include="$(IFS=,; echo "${PACKAGES[*]}")" bookworm "$root" >"$CACHE/debootstrap-guest.log" 2>&1 \
      || die "debootstrap failed; see $CACHE/debootstrap-guest.log"
    rm -f "$root"/etc/ssh/ssh_host_*
    tar -C "$root" -cf "$ROOTFS_TAR.tmp" . && mv -f "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
    rm -rf "$root"
    trap - EXIT
  fi
fi

# The recipe: this script, the guest's files beside it, and the root file system it starts from.
key=$(cat "$0" "$here"/* | sha256sum | cut -c1-12)
key=$(printf '%s\n' "$key" "$(basename "$ROOTFS_TAR")" | sha256sum | cut -c1-12)
out="$CACHE/guest-$key"
if [ "${HOSTBROKER_REBUILD:-0}" != 1 ] && [ -s "$out/rootfs.qcow2" ] && [ -s "$out/initrd.img" ] && [ -s "$out/vmlinuz" ]; then
  ln -sfn "guest-$key" "$CACHE/guest-image"
  say "guest image: present ($out)"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"

# 1. Kernel and modules ---------------------------------------------------------------------------
kpkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[ -n "$kpkg" ] || { apt-get update -qq; kpkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'); }
[ -n "$kpkg" ] || die "apt knows no linux-image-cloud-amd64; check the Debian sources in /etc/apt."
say "kernel: $kpkg"
(cd "$work" && apt-get download -q "$kpkg" >/dev/null 2>&1) || die "apt-get download $kpkg failed"
mkdir "$work/kernel"
dpkg-deb -x "$work/$kpkg"_*.deb "$work/kernel"
kver=${kpkg#linux-image-}
depmod -b "$work/kernel" "$kver"

# 2. initramfs --------------------------------------------------------------------------------------
ird="$work/initrd"
mkdir -p "$ird"/{bin,dev,proc,sys,newroot,etc,lib/modules}
cp /bin/busybox "$ird/bin/busybox"
ln -s busybox "$ird/bin/sh"
: >"$ird/modules"
for m in "${MODULES[@]}"; do
  modprobe -d "$work/kernel" -S "$kver" --show-depends "$m" | awk '$1 == "insmod" {print $2}' | while read -r ko; do
    rel=${ko#"$work/kernel"}
    grep -qxF "$rel" "$ird/modules" && continue
    mkdir -p "$ird$(dirname "$rel")"
    cp "$ko" "$ird$rel"
    echo "$rel" >>"$ird/modules"
  done
done
mkdir -p "$ird/tmp"
cp "$here/init" "$here/dhcp-script" "$here/nocloud.sh" "$here/yaml-flat.awk" "$ird/"
chmod 755 "$ird/init" "$ird/dhcp-script"

# 3. Root file system --------------------------------------------------------------------------------
rootdir="$work/root"
mkdir "$rootdir"
tar -C "$rootdir" -xf "$ROOTFS_TAR"
lib="$rootdir/usr/local/lib/hostbroker"
mkdir -p "$lib"
cp /bin/busybox "$here/sysinit" "$here/late" "$lib/"
cp "$here/inittab" "$rootdir/etc/inittab"
cp "$here/sshd.conf" "$rootdir/etc/ssh/sshd_config.d/hostbroker-guest.conf"
chmod 755 "$lib"/*
rm -f "$rootdir"/etc/ssh/ssh_host_*
printf 'hostbroker-guest\n' >"$rootdir/etc/hostname"

# 4. Files -----------------------------------------------------------------------------------------
staging="$work/out"
mkdir "$staging"
cp "$work/kernel/boot/vmlinuz-$kver" "$staging/vmlinuz"
(cd "$ird" && find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -6) >"$staging/initrd.img"
size=$(($(du -sm "$rootdir" | cut -f1) + 256))
mkfs.ext4 -q -F -L hbroot -E lazy_itable_init=0,lazy_journal_init=0 -d "$rootdir" "$work/root.raw" "${size}M" >/dev/null
qemu-img convert -f raw -O qcow2 "$work/root.raw" "$staging/rootfs.qcow2"
printf '%s\n' "$CMDLINE" >"$staging/cmdline"
printf '{"kernel":"%s","rootfs":"%s","recipe":"%s"}\n' "$kver" "$(basename "$ROOTFS_TAR")" "$key" >"$staging/manifest.json"
chmod 644 "$staging"/*
chmod 755 "$staging"
rm -rf "$out"
mv "$staging" "$out"
ln -sfn "guest-$key" "$CACHE/guest-image"
for old in "$CACHE"/guest-[0-9a-f]*; do
  [ -L "$old" ] || [ "$old" = "$out" ] || rm -rf "$old"
done
say "guest image: built $out (kernel $kver, root $(du -h "$out/rootfs.qcow2" | cut -f1))"
