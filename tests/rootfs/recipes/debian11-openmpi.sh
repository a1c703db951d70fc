# Debian 11 (glibc 2.31) with Open MPI 4.1.0 (libmpi.so.40); tests/programs/mpi-*.c built
# with mpicc.openmpi. Sourced by build-rootfs.sh with $work (build dir) and $progs set.
debootstrap_into bullseye
apt_in_rootfs openmpi-bin libopenmpi-dev gcc libc6-dev
build_mpi_programs mpicc.openmpi
