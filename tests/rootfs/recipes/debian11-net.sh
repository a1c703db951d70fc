# Debian 11 (glibc 2.31) with the network stack of its own: libfabric 1.11 (fi_info,
# fi_pingpong) and UCX 1.10 (ucx_info), plus /usr/local/bin/net-versions, which prints the
# versions the LOADED libfabric and libucp report at run time (fi_version(),
# ucp_get_version_string()): ucx_info -v prints the version it was compiled against.
# Sourced by build-rootfs.sh with $work (build dir) and $progs set.
debootstrap_into bullseye
apt_in_rootfs libfabric-bin ucx-utils gcc libc6-dev
mkdir -p "$work/rootfs/opt/tests"
cat >"$work/rootfs/opt/tests/net-versions.c" <<'C'
/* Prints the run-time versions of the libfabric and libucp this program loaded. */
#include <stdint.h>
#include <stdio.h>
uint32_t fi_version(void);
const char *ucp_get_version_string(void);
int main(void)
{
    uint32_t v = fi_version();
    printf("libfabric %u.%u\n", (unsigned)(v >> 16), (unsigned)(v & 0xffff));
    printf("ucp %s\n", ucp_get_version_string());
    return 0;
}
C
chroot "$work/rootfs" gcc -O2 -o /usr/local/bin/net-versions /opt/tests/net-versions.c \
  /usr/lib/x86_64-linux-gnu/libfabric.so.1 /usr/lib/x86_64-linux-gnu/libucp.so.0
