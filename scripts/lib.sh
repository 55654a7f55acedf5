# Shared by setup.sh, test.sh, demo.sh and bench.sh. Sourced, not run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PNPM_VERSION=10.34.9
# Debian packages the lab needs: Ceph (mon, OSD, mgr, rbd), tgt with its rbd backing store,
# an iSCSI initiator for checks, qemu + iPXE + pxelinux (+ OVMF for UEFI) for booting VMs,
# dnsmasq-base (the binary only: the `dnsmasq` package would start a host-wide service) and
# iproute2 for the lab's provisioning network; grub-efi-amd64-bin + mtools build the Debian
# image's EFI system partition without loop mounts.
APT_PACKAGES=(
  ceph-mon ceph-osd ceph-mgr ceph-common
  tgt tgt-rbd libiscsi-bin qemu-utils qemu-block-extra
  qemu-system-x86 ipxe-qemu ipxe pxelinux syslinux-common ovmf
  python3 python3-rbd util-linux coreutils
  debootstrap grub-pc-bin grub-efi-amd64-bin mtools e2fsprogs fdisk
  dnsmasq-base iproute2
)
# One binary per package tells whether it is installed (dpkg -s is slow for 17 packages).
APT_PROBES=(ceph-mon ceph-osd ceph-mgr rbd tgtd tgtadm iscsi-inq qemu-img qemu-system-x86_64 python3 flock timeout debootstrap sfdisk mkfs.ext4 grub-mkimage mformat dnsmasq ip bridge)

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

missing_apt_packages() {
  local missing=0
  for bin in "${APT_PROBES[@]}"; do command -v "$bin" >/dev/null 2>&1 || missing=1; done
  for f in /usr/lib/tgt/backing-store/bs_rbd.so /usr/lib/ipxe/ipxe.lkrn /usr/lib/ipxe/qemu/efi-e1000.rom \
    /usr/lib/PXELINUX/pxelinux.0 /usr/lib/syslinux/modules/bios/ldlinux.c32 /usr/share/ovmf/OVMF.fd /usr/lib/x86_64-linux-gnu/librbd.so.1 \
    /usr/lib/python3/dist-packages/rbd.cpython-311-x86_64-linux-gnu.so /usr/lib/grub/i386-pc/boot.img; do
    [ -e "$f" ] || missing=1
  done
  return $((1 - missing))
}

ensure_apt_packages() {
  if ! missing_apt_packages; then return 0; fi
  if [ "$(id -u)" != 0 ]; then
    log "missing system packages; as root run:"
    echo "  apt-get update && apt-get install -y --no-install-recommends ${APT_PACKAGES[*]}" >&2
    exit 1
  fi
  log "installing Debian packages (${APT_PACKAGES[*]})"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}" >/dev/null
}

ensure_node_deps() {
  # node-gyp builds better-sqlite3 against the local Node headers, never downloading them.
  export npm_config_nodedir="$(node -p 'require("path").resolve(process.execPath, "../..")')"
  if ! command -v pnpm >/dev/null 2>&1 || [ "$(pnpm --version)" != "$PNPM_VERSION" ]; then
    log "installing pnpm $PNPM_VERSION"
    npm i -g "pnpm@$PNPM_VERSION" >/dev/null
  fi
  log "installing dependencies from the lockfile"
  (cd "$ROOT" && pnpm install --frozen-lockfile --reporter=silent)
  log "building"
  (cd "$ROOT" && pnpm -s exec tsc -b)
}

setup_all() {
  ensure_apt_packages
  ensure_node_deps
}
