/* fileio.c: atomic writes and read-only maps. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"
#include "base/fileio.h"

int dsc_atomic_open(dsc_atomic_file *af, const char *path) {
    memset(af, 0, sizeof *af);
    if (strlen(path) >= sizeof af->path) return dsc_set_error("%s: path too long", path);
    strcpy(af->path, path);
    snprintf(af->tmp, sizeof af->tmp, "%s.tmp.%ld", path, (long)getpid());
    af->f = fopen(af->tmp, "wb");
    if (!af->f) return dsc_set_error("%s: cannot create: %s", af->tmp, strerror(errno));
    return DSC_OK;
}

int dsc_atomic_write(dsc_atomic_file *af, const void *data, size_t len) {
    if (len && fwrite(data, 1, len, af->f) != len) {
        int e = errno;
        dsc_atomic_abort(af);
        return dsc_set_error("%s: write failed: %s", af->path, strerror(e));
    }
    return DSC_OK;
}

static void fsync_dir_of(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    int fd = open(dirname(buf), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

int dsc_atomic_commit(dsc_atomic_file *af) {
    if (fflush(af->f) != 0 || fsync(fileno(af->f)) != 0) {
        int e = errno;
        dsc_atomic_abort(af);
        return dsc_set_error("%s: flush failed: %s", af->path, strerror(e));
    }
    if (fclose(af->f) != 0) {
        af->f = NULL;
        int e = errno;
        dsc_atomic_abort(af);
        return dsc_set_error("%s: close failed: %s", af->path, strerror(e));
    }
    af->f = NULL;
    if (rename(af->tmp, af->path) != 0) {
        int e = errno;
        unlink(af->tmp);
        return dsc_set_error("%s: rename from %s failed: %s", af->path, af->tmp, strerror(e));
    }
    fsync_dir_of(af->path);
    return DSC_OK;
}

void dsc_atomic_abort(dsc_atomic_file *af) {
    if (af->f) fclose(af->f);
    af->f = NULL;
    if (af->tmp[0]) unlink(af->tmp);
}

int dsc_write_file_atomic(const char *path, const void *data, size_t len) {
    dsc_atomic_file af;
    if (dsc_atomic_open(&af, path) || dsc_atomic_write(&af, data, len)) return DSC_ERR;
    return dsc_atomic_commit(&af);
}

int dsc_map_file(const char *path, dsc_mapped_file *out) {
    out->data = NULL;
    out->size = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return dsc_set_error("%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return dsc_set_error("%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return dsc_set_error("%s: not a regular file", path);
    }
    out->size = (size_t)st.st_size;
    if (out->size == 0) {
        close(fd);
        return DSC_OK; /* an empty file: data stays NULL, the reader reports it */
    }
    void *p = mmap(NULL, out->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return dsc_set_error("%s: cannot map %zu bytes: %s", path, out->size, strerror(errno));
    out->data = p;
    return DSC_OK;
}

void dsc_unmap_file(dsc_mapped_file *m) {
    if (m->data) munmap((void *)m->data, m->size);
    m->data = NULL;
    m->size = 0;
}

int dsc_mkdir(const char *path) {
    /* parents first, like mkdir -p (an output folder may be several levels deep) */
    char parent[4096];
    size_t n = strlen(path);
    if (n < sizeof parent) {
        memcpy(parent, path, n + 1);
        while (n > 1 && parent[n - 1] == '/') parent[--n] = '\0';
        char *slash = strrchr(parent, '/');
        if (slash && slash != parent) {
            *slash = '\0';
            struct stat ps;
            if (stat(parent, &ps) != 0 && dsc_mkdir(parent)) return DSC_ERR;
        }
    }
    if (mkdir(path, 0755) == 0 || errno == EEXIST) {
        struct stat st;
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return DSC_OK;
        return dsc_set_error("%s: exists and is not a directory", path);
    }
    return dsc_set_error("%s: cannot create directory: %s", path, strerror(errno));
}
