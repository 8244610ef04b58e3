/* fileio.h: file helpers that never lose data: atomic writes (temp file, fsync, rename, fsync of
 * the folder) and read-only memory maps with their size. */
#ifndef DSC_BASE_FILEIO_H
#define DSC_BASE_FILEIO_H

#include <stddef.h>
#include <stdio.h>

/* Writes len bytes to path atomically: either the old file or the complete new one survives. */
int dsc_write_file_atomic(const char *path, const void *data, size_t len);

/* Atomic writes of many pieces: open a temporary next to path, write, then commit or abort. */
typedef struct {
    FILE *f;
    char path[4096];
    char tmp[4160];
} dsc_atomic_file;
int dsc_atomic_open(dsc_atomic_file *af, const char *path);
int dsc_atomic_write(dsc_atomic_file *af, const void *data, size_t len);
int dsc_atomic_commit(dsc_atomic_file *af); /* fsync, rename, fsync dir */
void dsc_atomic_abort(dsc_atomic_file *af); /* removes the temporary */

/* A read-only map of a whole file. */
typedef struct {
    const unsigned char *data;
    size_t size;
} dsc_mapped_file;
int dsc_map_file(const char *path, dsc_mapped_file *out);
void dsc_unmap_file(dsc_mapped_file *m);

/* Creates a directory and any missing parents (mkdir -p); an existing one is fine. */
int dsc_mkdir(const char *path);

#endif
