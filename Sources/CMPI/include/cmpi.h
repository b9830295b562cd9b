// Open MPI, loaded at run time (dlopen), so that the tools build and run without it and use it
// when started by mpirun. Open MPI's handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, ...) are macros
// naming exported objects (&ompi_mpi_comm_world, ...): the shim looks those up by name. Open MPI
// 4.x and 5.x (libmpi.so.40) share this ABI; MPICH's differs and is not supported.
// Every function returns 0 on success, else an MPI error code (or -1: not loaded).
#ifndef DDPM_CMPI_H
#define DDPM_CMPI_H
#include <stdint.h>

/// dlopen `path` (NULL: libmpi.so.40, then libmpi.so) and resolve every symbol; on failure a
/// message in err (NUL-terminated) and -1.
int ddpm_mpi_load(const char *path, char *err, int errlen);
/// MPI_Init_thread (funneled) with errors returned, not fatal.
int ddpm_mpi_init(void);
int ddpm_mpi_rank(int *rank);
int ddpm_mpi_size(int *size);
/// In-place sums over all ranks (MPI_Allreduce, MPI_IN_PLACE), in pieces of at most 2^30 values.
int ddpm_mpi_allreduce_sum_float(float *buf, int64_t count);
int ddpm_mpi_allreduce_sum_double(double *buf, int64_t count);
/// Every rank's value, in rank order (MPI_Allgather of one uint64).
int ddpm_mpi_allgather_u64(uint64_t value, uint64_t *out);
int ddpm_mpi_bcast_bytes(void *buf, int64_t count, int root);
int ddpm_mpi_send_bytes(const void *buf, int64_t count, int dest, int tag);
int ddpm_mpi_recv_bytes(void *buf, int64_t count, int source, int tag);
int ddpm_mpi_barrier(void);
/// Ends every rank of the job (MPI_Abort); does not return.
void ddpm_mpi_abort(int code);
int ddpm_mpi_finalize(void);
/// The text of an MPI error code.
void ddpm_mpi_error_string(int code, char *out, int outlen);
#endif
