/*
 * Mock libnvidia-ml.so.1 for the tests and benchmarks of cdi-gen and gpu-hook
 * (built by the test-support crate, tests/support/src/stubs.rs).
 *
 * Implements exactly the NVML calls cdi-gen makes (through nvml-wrapper), for a
 * machine described by the file named in $MOCK_NVML_CONFIG:
 *
 *   driver 550.54.14
 *   cuda 12040
 *   init_error 9                                    (optional: nvmlInit_v2 fails)
 *   gpu <index> <minor> <pci bus id> <uuid> <mig 0|1> <name...>
 *   mig <gpu index> <gi> <ci> <uuid>                (MIG devices, in NVML order)
 *
 * Without $MOCK_NVML_CONFIG, the file mock-nvml.conf in the directory the library was
 * loaded from is read (gpu-hook runs NVML in a child with a scrubbed environment); without
 * either, nvmlInit_v2 returns NVML_ERROR_DRIVER_NOT_LOADED, as the real library does on a
 * host whose kernel module is not loaded.
 * Build: gcc -shared -fPIC -Wl,-soname,libnvidia-ml.so.1 -o libnvidia-ml.so.1 mock_nvml.c
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int nvmlReturn_t;
#define NVML_SUCCESS 0
#define NVML_ERROR_UNINITIALIZED 1
#define NVML_ERROR_INVALID_ARGUMENT 2
#define NVML_ERROR_NOT_SUPPORTED 3
#define NVML_ERROR_NOT_FOUND 6
#define NVML_ERROR_INSUFFICIENT_SIZE 7
#define NVML_ERROR_DRIVER_NOT_LOADED 9
#define NVML_ERROR_UNKNOWN 999

#define MAX_GPUS 128
#define MAX_MIGS_PER_GPU 7

typedef struct {
    char busIdLegacy[16];
    unsigned int domain;
    unsigned int bus;
    unsigned int device;
    unsigned int pciDeviceId;
    unsigned int pciSubSystemId;
    char busId[32];
} nvmlPciInfo_t;

struct mock_dev {
    int is_mig;
    unsigned int index; /* GPU index, or parent's index for a MIG device */
    unsigned int minor;
    char uuid[96];
    char name[96];
    char bus_id[32];
    unsigned int mig_mode;
    unsigned int gi, ci;
    unsigned int nmigs;
    struct mock_dev *migs[MAX_MIGS_PER_GPU];
};

typedef struct mock_dev *nvmlDevice_t;

static struct mock_dev gpus[MAX_GPUS];
static struct mock_dev migs[MAX_GPUS * MAX_MIGS_PER_GPU];
static unsigned int ngpus, nmigs;
static char driver_version[80] = "0.0";
static int cuda_version;
static int initialized;

static nvmlReturn_t copy_str(char *dst, unsigned int len, const char *src) {
    if (!dst) return NVML_ERROR_INVALID_ARGUMENT;
    if (strlen(src) + 1 > len) return NVML_ERROR_INSUFFICIENT_SIZE;
    strcpy(dst, src);
    return NVML_SUCCESS;
}

static nvmlReturn_t load_config(void) {
    const char *path = getenv("MOCK_NVML_CONFIG");
    char beside[4096];
    if (!path || !*path) {
        Dl_info info;
        const char *slash;
        if (!dladdr((void *)load_config, &info) || !info.dli_fname ||
            !(slash = strrchr(info.dli_fname, '/')))
            return NVML_ERROR_DRIVER_NOT_LOADED;
        snprintf(beside, sizeof beside, "%.*s/mock-nvml.conf", (int)(slash - info.dli_fname),
                 info.dli_fname);
        if (access(beside, R_OK) != 0) return NVML_ERROR_DRIVER_NOT_LOADED;
        path = beside;
    }
    FILE *f = fopen(path, "r");
    if (!f) return NVML_ERROR_UNKNOWN;
    char line[512];
    int init_error = 0;
    ngpus = nmigs = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        unsigned int a, b, c, d;
        int n = 0;
        char s1[96], s2[96];
        if (sscanf(line, "driver %79s", driver_version) == 1) continue;
        if (sscanf(line, "cuda %d", &cuda_version) == 1) continue;
        if (sscanf(line, "init_error %d", &init_error) == 1) continue;
        if (sscanf(line, "gpu %u %u %31s %95s %u %n", &a, &b, s1, s2, &c, &n) == 5 && n > 0) {
            if (ngpus >= MAX_GPUS) break;
            struct mock_dev *g = &gpus[ngpus++];
            memset(g, 0, sizeof *g);
            g->index = a;
            g->minor = b;
            snprintf(g->bus_id, sizeof g->bus_id, "%s", s1);
            snprintf(g->uuid, sizeof g->uuid, "%s", s2);
            g->mig_mode = c;
            snprintf(g->name, sizeof g->name, "%s", line + n);
            continue;
        }
        if (sscanf(line, "mig %u %u %u %95s", &a, &b, &c, s2) == 4) {
            for (d = 0; d < ngpus; d++) {
                struct mock_dev *g = &gpus[d];
                if (g->index != a || g->nmigs >= MAX_MIGS_PER_GPU) continue;
                struct mock_dev *m = &migs[nmigs++];
                memset(m, 0, sizeof *m);
                m->is_mig = 1;
                m->index = a;
                m->minor = g->minor;
                m->gi = b;
                m->ci = c;
                snprintf(m->uuid, sizeof m->uuid, "%s", s2);
                snprintf(m->name, sizeof m->name, "%s MIG", g->name);
                g->migs[g->nmigs++] = m;
                break;
            }
        }
    }
    fclose(f);
    return init_error;
}

nvmlReturn_t nvmlInit_v2(void) {
    nvmlReturn_t r = load_config();
    if (r == NVML_SUCCESS) initialized = 1;
    return r;
}

nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    return nvmlInit_v2();
}

nvmlReturn_t nvmlShutdown(void) {
    initialized = 0;
    return NVML_SUCCESS;
}

const char *nvmlErrorString(nvmlReturn_t r) {
    switch (r) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    case NVML_ERROR_NOT_FOUND: return "Not Found";
    default: return "Unknown Error";
    }
}

#define CHECK_INIT() do { if (!initialized) return NVML_ERROR_UNINITIALIZED; } while (0)
#define CHECK_DEV(d) do { CHECK_INIT(); if (!(d)) return NVML_ERROR_INVALID_ARGUMENT; } while (0)

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    CHECK_INIT();
    return copy_str(version, length, driver_version);
}

nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int *v) {
    CHECK_INIT();
    if (!v) return NVML_ERROR_INVALID_ARGUMENT;
    *v = cuda_version;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlSystemGetCudaDriverVersion(int *v) { return nvmlSystemGetCudaDriverVersion_v2(v); }

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
    CHECK_INIT();
    if (!count) return NVML_ERROR_INVALID_ARGUMENT;
    *count = ngpus;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *dev) {
    CHECK_INIT();
    if (!dev) return NVML_ERROR_INVALID_ARGUMENT;
    for (unsigned int i = 0; i < ngpus; i++)
        if (gpus[i].index == index) { *dev = &gpus[i]; return NVML_SUCCESS; }
    return NVML_ERROR_INVALID_ARGUMENT;
}

nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t d, unsigned int *index) {
    CHECK_DEV(d);
    *index = d->index;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMinorNumber(nvmlDevice_t d, unsigned int *minor) {
    CHECK_DEV(d);
    if (d->is_mig) return NVML_ERROR_NOT_SUPPORTED;
    *minor = d->minor;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t d, char *uuid, unsigned int length) {
    CHECK_DEV(d);
    return copy_str(uuid, length, d->uuid);
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t d, char *name, unsigned int length) {
    CHECK_DEV(d);
    return copy_str(name, length, d->name);
}

nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t d, nvmlPciInfo_t *pci) {
    CHECK_DEV(d);
    if (!pci) return NVML_ERROR_INVALID_ARGUMENT;
    memset(pci, 0, sizeof *pci);
    const char *id = d->bus_id;
    if (d->is_mig) id = gpus[0].bus_id; /* not used by cdi-gen */
    snprintf(pci->busId, sizeof pci->busId, "%s", id);
    unsigned int dom = 0, bus = 0, dev = 0, fn = 0;
    sscanf(id, "%x:%x:%x.%x", &dom, &bus, &dev, &fn);
    snprintf(pci->busIdLegacy, sizeof pci->busIdLegacy, "%04x:%02x:%02x.%x", dom, bus, dev, fn);
    pci->domain = dom;
    pci->bus = bus;
    pci->device = dev;
    pci->pciDeviceId = 0x233010de;
    pci->pciSubSystemId = 0x16c110de;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t d, unsigned int *current, unsigned int *pending) {
    CHECK_DEV(d);
    if (d->is_mig) return NVML_ERROR_NOT_SUPPORTED;
    *current = d->mig_mode;
    *pending = d->mig_mode;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t d, unsigned int *count) {
    CHECK_DEV(d);
    *count = d->mig_mode ? MAX_MIGS_PER_GPU : 0;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t d, unsigned int index, nvmlDevice_t *mig) {
    CHECK_DEV(d);
    if (!mig) return NVML_ERROR_INVALID_ARGUMENT;
    if (!d->mig_mode) return NVML_ERROR_NOT_SUPPORTED;
    if (index >= d->nmigs) return NVML_ERROR_NOT_FOUND;
    *mig = d->migs[index];
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceIsMigDeviceHandle(nvmlDevice_t d, unsigned int *is_mig) {
    CHECK_DEV(d);
    *is_mig = (unsigned int)d->is_mig;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetGpuInstanceId(nvmlDevice_t d, unsigned int *id) {
    CHECK_DEV(d);
    if (!d->is_mig) return NVML_ERROR_NOT_SUPPORTED;
    *id = d->gi;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetComputeInstanceId(nvmlDevice_t d, unsigned int *id) {
    CHECK_DEV(d);
    if (!d->is_mig) return NVML_ERROR_NOT_SUPPORTED;
    *id = d->ci;
    return NVML_SUCCESS;
}
