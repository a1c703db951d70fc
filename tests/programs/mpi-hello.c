/* MPI hello: prints the MPI library version the process actually runs on,
 * plus rank/size. Used by the end-to-end tests and the demo. */
#include <mpi.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    char version[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0, rank = 0, size = 0;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Get_library_version(version, &len);
    char *nl = strchr(version, '\n');
    if (nl) *nl = '\0';
    printf("rank %d of %d: %s\n", rank, size, version);
    MPI_Finalize();
    return 0;
}
