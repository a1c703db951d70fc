/* OSU-style ping-pong between ranks 0 and 1 of MPI_COMM_WORLD.
 *
 *   mpi-pingpong [ITERS_SMALL [ITERS_LARGE]]
 *
 * Rank 0 prints, one line each (parsed by the e2e tests and the benchmark):
 *   pingpong: init_epoch_us=<T> rank=<r>     (every rank: wall-clock time at MPI_Init return)
 *   pingpong: world_size=<N> mpi_version=<MPI_Get_library_version first line>
 *   pingpong: bytes=8 iters=<n> latency_us=<one-way latency>
 *   pingpong: bytes=1048576 iters=<n> bandwidth_MBps=<MB/s, 1 MB = 1e6 bytes> latency_us=<..>
 *   pingpong: ok
 * Warmup iterations are excluded, as in the OSU micro-benchmarks. With
 * PINGPONG_ABORT_RANK=r, rank r calls MPI_Abort(MPI_COMM_WORLD, 3) after the exchange;
 * with PINGPONG_SLEEP=s, every rank sleeps s seconds before MPI_Finalize (for scancel).
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

static double pingpong(int rank, char *buf, int bytes, int warmup, int iters) {
    double t0 = 0.0;
    for (int i = 0; i < warmup + iters; i++) {
        if (i == warmup) {
            MPI_Barrier(MPI_COMM_WORLD);
            t0 = MPI_Wtime();
        }
        if (rank == 0) {
            MPI_Send(buf, bytes, MPI_CHAR, 1, 1, MPI_COMM_WORLD);
            MPI_Recv(buf, bytes, MPI_CHAR, 1, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        } else if (rank == 1) {
            MPI_Recv(buf, bytes, MPI_CHAR, 0, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            MPI_Send(buf, bytes, MPI_CHAR, 0, 1, MPI_COMM_WORLD);
        }
    }
    return (MPI_Wtime() - t0) / (2.0 * iters); /* one-way time per message */
}

int main(int argc, char **argv) {
    int rank, size, len;
    char version[MPI_MAX_LIBRARY_VERSION_STRING];
    MPI_Init(&argc, &argv);
    struct timeval tv;
    gettimeofday(&tv, NULL);
    long long init_us = (long long)tv.tv_sec * 1000000LL + tv.tv_usec;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Get_library_version(version, &len);
    version[strcspn(version, "\n")] = '\0';
    int iters_small = argc > 1 ? atoi(argv[1]) : 10000;
    int iters_large = argc > 2 ? atoi(argv[2]) : 1000;
    const int large = 1 << 20;

    /* Every rank reports when it left MPI_Init (rank 0 prints them all). */
    long long all_init[1024];
    int n = size < 1024 ? size : 1024;
    MPI_Gather(&init_us, 1, MPI_LONG_LONG, rank == 0 ? all_init : NULL, 1, MPI_LONG_LONG, 0,
               MPI_COMM_WORLD);
    if (rank == 0) {
        for (int r = 0; r < n; r++) printf("pingpong: init_epoch_us=%lld rank=%d\n", all_init[r], r);
        printf("pingpong: world_size=%d mpi_version=%s\n", size, version);
        fflush(stdout);
    }
    if (size < 2) {
        if (rank == 0) fprintf(stderr, "pingpong: needs at least 2 ranks (got %d)\n", size);
        MPI_Finalize();
        return 2;
    }
    char *buf = malloc(large);
    if (!buf) MPI_Abort(MPI_COMM_WORLD, 4);
    memset(buf, rank + 1, large);

    double lat = pingpong(rank, buf, 8, iters_small / 10 + 10, iters_small);
    if (rank == 0) printf("pingpong: bytes=8 iters=%d latency_us=%.3f\n", iters_small, lat * 1e6);
    double big = pingpong(rank, buf, large, iters_large / 10 + 2, iters_large);
    if (rank == 0) {
        printf("pingpong: bytes=%d iters=%d bandwidth_MBps=%.1f latency_us=%.3f\n", large,
               iters_large, large / big / 1e6, big * 1e6);
        fflush(stdout);
    }
    const char *ab = getenv("PINGPONG_ABORT_RANK");
    if (ab && atoi(ab) == rank) {
        fprintf(stderr, "pingpong: rank %d calls MPI_Abort as requested\n", rank);
        MPI_Abort(MPI_COMM_WORLD, 3);
    }
    const char *sl = getenv("PINGPONG_SLEEP");
    if (sl) {
        if (rank == 0) {
            printf("pingpong: sleeping %s s\n", sl);
            fflush(stdout);
        }
        sleep((unsigned)atoi(sl));
    }
    free(buf);
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0) printf("pingpong: ok\n");
    MPI_Finalize();
    return 0;
}
