# Debian 12 (glibc 2.36) with MPICH 4.0.2, the host's own; tests/programs/mpi-*.c built
# with mpicc. Sourced by build-rootfs.sh with $work (build dir) and $progs set.
debootstrap_into bookworm
apt_in_rootfs mpich libmpich-dev gcc libc6-dev
build_mpi_programs mpicc
