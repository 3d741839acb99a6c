/* safetensors.h - one .safetensors file: read-only mmap + validated header.
 *
 * Layout: 8-byte little-endian header length N, N bytes of JSON
 * {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}},
 * then the tensor data (offsets are relative to the end of the header).
 * Every entry is checked: known dtype, non-negative shape, begin <= end inside
 * the file, and end - begin == element size * product(shape). */
#ifndef GPTOSS_SAFETENSORS_H
#define GPTOSS_SAFETENSORS_H

#include "gptoss.h"
#include <stddef.h>
#include <stdint.h>

#define ST_MAX_DIMS 8

typedef struct {
    char *name;
    const char *dtype;        /* "BF16", "F32", "U8", ... (static string) */
    int elem_size;            /* bytes per element */
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    uint64_t begin, end;      /* data_offsets, relative to the data section */
    const void *data;         /* the bytes (into the mapping / buffer) */
} st_tensor;

typedef struct {
    char *name;               /* used in messages (the file name as given) */
    void *map;                /* mmap of the whole file, or NULL when parsed from memory */
    size_t map_size;
    st_tensor *tensors;       /* sorted by name */
    int n_tensors;
} st_file;

/* Parses and validates the header of a whole safetensors image buf[0..size)
 * (never reads outside it). Tensor data pointers point into buf. `name` is
 * used in error messages. On failure nothing is left allocated. */
gptoss_status st_parse(const void *buf, size_t size, const char *name, st_file *f);

/* Maps `path` read-only and parses it; `name` is used in messages (NULL = path). */
gptoss_status st_open(const char *path, const char *name, st_file *f);

/* Unmaps and frees (safe on a zeroed or already closed st_file). */
void st_close(st_file *f);

/* Tensor by name, or NULL. */
const st_tensor *st_find(const st_file *f, const char *name);

/* "[32,2880,90]" into buf (for messages). */
const char *st_shape_str(const int64_t *shape, int ndim, char *buf, size_t size);

#endif
