#!/usr/bin/env bash
# kernels: what `cargo xtask kernels` needs — qemu (TCG; no KVM needed), a static busybox
# and cpio for the VMs' initramfs, binutils (objcopy strips the agent's debug info), the
# clients and servers the in-VM suite runs (curl, openssl, dnsmasq-base: no service is
# started), util-linux (unshare) and iproute2 for the run on this host's kernel. The
# kernels themselves are fetched by xtask (`apt-get download`, unpacked under target/).
set -euo pipefail
need=()
command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)
# The initramfs needs the static busybox (ldd fails on a static binary).
if [ ! -x /bin/busybox ] || ldd /bin/busybox >/dev/null 2>&1; then need+=(busybox-static); fi
command -v cpio >/dev/null 2>&1 || need+=(cpio)
command -v objcopy >/dev/null 2>&1 || need+=(binutils)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v dnsmasq >/dev/null 2>&1 || [ -x /usr/sbin/dnsmasq ] || need+=(dnsmasq-base)
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
