# Debian 11 (glibc 2.31) with MPICH 3.4.1; tests/programs/mpi-*.c built with mpicc.
# Sourced by build-rootfs.sh with $work (build dir) and $progs set.
debootstrap_into bullseye
apt_in_rootfs mpich libmpich-dev gcc libc6-dev
build_mpi_programs mpicc
