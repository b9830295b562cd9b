// See include/cmpi.h. Handles are pointers in Open MPI's ABI (struct ompi_*_t *), so each is a
// void * here; MPI_IN_PLACE is (void *) 1 and MPI_STATUS_IGNORE is NULL in that ABI.
#include "cmpi.h"
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef void *Handle;
#define IN_PLACE ((void *)1)
#define THREAD_FUNNELED 1
#define PIECE (1 << 30)

static int (*p_init_thread)(int *, char ***, int, int *);
static int (*p_initialized)(int *);
static int (*p_comm_rank)(Handle, int *);
static int (*p_comm_size)(Handle, int *);
static int (*p_allreduce)(const void *, void *, int, Handle, Handle, Handle);
static int (*p_allgather)(const void *, int, Handle, void *, int, Handle, Handle);
static int (*p_bcast)(void *, int, Handle, int, Handle);
static int (*p_send)(const void *, int, Handle, int, int, Handle);
static int (*p_recv)(void *, int, Handle, int, int, Handle, void *);
static int (*p_barrier)(Handle);
static int (*p_abort)(Handle, int);
static int (*p_finalize)(void);
static int (*p_set_errhandler)(Handle, Handle);
static int (*p_error_string)(int, char *, int *);
static Handle comm_world, t_float, t_double, t_byte, t_uint64, op_sum, errors_return;
static int loaded = 0;

static void *need(void *lib, const char *name, int *missing, char *err, int errlen) {
    void *s = dlsym(lib, name);
    if (!s && !*missing) { snprintf(err, errlen, "symbol %s not found in the MPI library (not Open MPI?)", name); *missing = 1; }
    return s;
}

int ddpm_mpi_load(const char *path, char *err, int errlen) {
    if (loaded) return 0;
    // RTLD_GLOBAL: Open MPI's own components, opened later, resolve against libmpi's symbols.
    void *lib = path ? dlopen(path, RTLD_NOW | RTLD_GLOBAL) : dlopen("libmpi.so.40", RTLD_NOW | RTLD_GLOBAL);
    if (!lib && !path) lib = dlopen("libmpi.so", RTLD_NOW | RTLD_GLOBAL);
    if (!lib) { snprintf(err, errlen, "cannot load Open MPI (%s)", dlerror()); return -1; }
    int missing = 0;
    *(void **)&p_init_thread = need(lib, "MPI_Init_thread", &missing, err, errlen);
    *(void **)&p_initialized = need(lib, "MPI_Initialized", &missing, err, errlen);
    *(void **)&p_comm_rank = need(lib, "MPI_Comm_rank", &missing, err, errlen);
    *(void **)&p_comm_size = need(lib, "MPI_Comm_size", &missing, err, errlen);
    *(void **)&p_allreduce = need(lib, "MPI_Allreduce", &missing, err, errlen);
    *(void **)&p_allgather = need(lib, "MPI_Allgather", &missing, err, errlen);
    *(void **)&p_bcast = need(lib, "MPI_Bcast", &missing, err, errlen);
    *(void **)&p_send = need(lib, "MPI_Send", &missing, err, errlen);
    *(void **)&p_recv = need(lib, "MPI_Recv", &missing, err, errlen);
    *(void **)&p_barrier = need(lib, "MPI_Barrier", &missing, err, errlen);
    *(void **)&p_abort = need(lib, "MPI_Abort", &missing, err, errlen);
    *(void **)&p_finalize = need(lib, "MPI_Finalize", &missing, err, errlen);
    *(void **)&p_set_errhandler = need(lib, "MPI_Comm_set_errhandler", &missing, err, errlen);
    *(void **)&p_error_string = need(lib, "MPI_Error_string", &missing, err, errlen);
    comm_world = need(lib, "ompi_mpi_comm_world", &missing, err, errlen);
    t_float = need(lib, "ompi_mpi_float", &missing, err, errlen);
    t_double = need(lib, "ompi_mpi_double", &missing, err, errlen);
    t_byte = need(lib, "ompi_mpi_byte", &missing, err, errlen);
    t_uint64 = need(lib, "ompi_mpi_uint64_t", &missing, err, errlen);
    op_sum = need(lib, "ompi_mpi_op_sum", &missing, err, errlen);
    errors_return = need(lib, "ompi_mpi_errors_return", &missing, err, errlen);
    if (missing) return -1;
    loaded = 1;
    return 0;
}

int ddpm_mpi_init(void) {
    if (!loaded) return -1;
    int done = 0, provided = 0;
    int rc = p_initialized(&done);
    if (rc || done) return rc;
    rc = p_init_thread(NULL, NULL, THREAD_FUNNELED, &provided);
    if (rc) return rc;
    return p_set_errhandler(comm_world, errors_return);
}

int ddpm_mpi_rank(int *rank) { return loaded ? p_comm_rank(comm_world, rank) : -1; }
int ddpm_mpi_size(int *size) { return loaded ? p_comm_size(comm_world, size) : -1; }

int ddpm_mpi_allreduce_sum_float(float *buf, int64_t count) {
    if (!loaded) return -1;
    for (int64_t at = 0; at < count; at += PIECE) {
        int n = (int)(count - at < PIECE ? count - at : PIECE);
        int rc = p_allreduce(IN_PLACE, buf + at, n, t_float, op_sum, comm_world);
        if (rc) return rc;
    }
    return 0;
}

int ddpm_mpi_allreduce_sum_double(double *buf, int64_t count) {
    if (!loaded) return -1;
    for (int64_t at = 0; at < count; at += PIECE) {
        int n = (int)(count - at < PIECE ? count - at : PIECE);
        int rc = p_allreduce(IN_PLACE, buf + at, n, t_double, op_sum, comm_world);
        if (rc) return rc;
    }
    return 0;
}

int ddpm_mpi_allgather_u64(uint64_t value, uint64_t *out) {
    return loaded ? p_allgather(&value, 1, t_uint64, out, 1, t_uint64, comm_world) : -1;
}

int ddpm_mpi_bcast_bytes(void *buf, int64_t count, int root) {
    if (!loaded) return -1;
    for (int64_t at = 0; at < count; at += PIECE) {
        int n = (int)(count - at < PIECE ? count - at : PIECE);
        int rc = p_bcast((char *)buf + at, n, t_byte, root, comm_world);
        if (rc) return rc;
    }
    return 0;
}

int ddpm_mpi_send_bytes(const void *buf, int64_t count, int dest, int tag) {
    if (!loaded) return -1;
    for (int64_t at = 0; at < count; at += PIECE) {
        int n = (int)(count - at < PIECE ? count - at : PIECE);
        int rc = p_send((const char *)buf + at, n, t_byte, dest, tag, comm_world);
        if (rc) return rc;
    }
    return 0;
}

int ddpm_mpi_recv_bytes(void *buf, int64_t count, int source, int tag) {
    if (!loaded) return -1;
    for (int64_t at = 0; at < count; at += PIECE) {
        int n = (int)(count - at < PIECE ? count - at : PIECE);
        int rc = p_recv((char *)buf + at, n, t_byte, source, tag, comm_world, NULL);
        if (rc) return rc;
    }
    return 0;
}

int ddpm_mpi_barrier(void) { return loaded ? p_barrier(comm_world) : -1; }

void ddpm_mpi_abort(int code) {
    if (loaded) p_abort(comm_world, code);
    _exit(code);
}

int ddpm_mpi_finalize(void) { return loaded ? p_finalize() : -1; }

void ddpm_mpi_error_string(int code, char *out, int outlen) {
    if (!loaded || outlen < 1) { if (outlen > 0) snprintf(out, outlen, "MPI error %d", code); return; }
    char text[512];
    int len = 0;
    if (p_error_string(code, text, &len) == 0) snprintf(out, outlen, "%s", text);
    else snprintf(out, outlen, "MPI error %d", code);
}
