#!/usr/bin/env bash
# Assemble the final image's filesystem without a container engine: what the Dockerfile's last
# stage (gcr.io/distroless/cc-debian12:nonroot) gives the binary and nothing more: the C runtime
# it links, /etc/passwd and /etc/group with the nonroot user (65532), and the binary. No shell,
# no package manager, no CA bundle (the operator trusts the service account's CA).
#
#   hack/rootfs.sh BINARY DIR    # DIR is created (or emptied) and filled
#
# `make image-rootfs` runs the release binary from it under chroot as UID 65532, and
# tests/image.rs does the same with the test build.
set -euo pipefail

binary=${1:?usage: rootfs.sh BINARY DIR}
root=${2:?usage: rootfs.sh BINARY DIR}
[[ -x $binary ]] || { echo "rootfs.sh: $binary is not an executable" >&2; exit 1; }

rm -rf "$root"
mkdir -p "$root/usr/local/bin" "$root/etc" "$root/tmp"
install -m 0555 "$binary" "$root/usr/local/bin/meshready"

# The shared libraries the binary loads (glibc, libgcc_s, the loader): distroless/cc's content.
ldd "$binary" | grep -o '/[^ ]*' | sort -u | while read -r lib; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done

cat >"$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
PASSWD
cat >"$root/etc/group" <<'GROUP'
root:x:0:
nonroot:x:65532:
GROUP
# The Deployment sets readOnlyRootFilesystem: nothing, /tmp included, is writable at run time.
# Read-only for the user the image runs as (UID 65532).
chmod -R a-w "$root/usr" "$root/etc" "$root/tmp"
