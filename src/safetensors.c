/* safetensors.c - read-only mmap and header validation of .safetensors files. */
#include "safetensors.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Largest header we accept (the 120b shards have ~100 KB headers). */
#define ST_MAX_HEADER ((uint64_t)100 << 20)

static const struct { const char *name; int size; } st_dtypes[] = {
    { "BOOL", 1 }, { "U8", 1 }, { "I8", 1 }, { "F8_E4M3", 1 }, { "F8_E5M2", 1 },
    { "F8_E8M0", 1 }, { "U16", 2 }, { "I16", 2 }, { "F16", 2 }, { "BF16", 2 },
    { "U32", 4 }, { "I32", 4 }, { "F32", 4 }, { "U64", 8 }, { "I64", 8 }, { "F64", 8 },
};

const char *st_shape_str(const int64_t *shape, int ndim, char *buf, size_t size) {
    size_t len = 0;
    if (size == 0) return buf;
    buf[0] = 0;
    len += (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, "%s%lld", i ? "," : "", (long long)shape[i]);
    if (len < size) snprintf(buf + len, size - len, "]");
    return buf;
}

static int cmp_tensor(const void *a, const void *b) {
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

static void free_tensors(st_file *f) {
    for (int i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->tensors);
    f->tensors = NULL;
    f->n_tensors = 0;
}

/* One header entry -> t. Returns 0 or sets the error and returns a status. */
static gptoss_status parse_entry(const char *file, const char *key, json_t *v, uint64_t data_size,
                                 st_tensor *t) {
    if (!json_is_object(v))
        return gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: tensor %s: header entry is not an object", file, key);
    json_t *dt = json_object_get(v, "dtype"), *sh = json_object_get(v, "shape"),
           *off = json_object_get(v, "data_offsets");
    if (!json_is_string(dt))
        return gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: tensor %s: missing dtype", file, key);
    const char *d = json_string_value(dt);
    t->dtype = NULL;
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (!strcmp(d, st_dtypes[i].name)) { t->dtype = st_dtypes[i].name; t->elem_size = st_dtypes[i].size; }
    if (!t->dtype)
        return gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: tensor %s: unknown dtype \"%.32s\"", file, key, d);
    if (!json_is_array(sh) || json_array_size(sh) > ST_MAX_DIMS)
        return gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: tensor %s: shape must be an array of at most %d sizes",
                                file, key, ST_MAX_DIMS);
    t->ndim = (int)json_array_size(sh);
    /* numel * elem_size without overflow: every factor is bounded by the file size
     * unless some dimension is 0 */
    uint64_t bytes = (uint64_t)t->elem_size;
    int zero = 0;
    for (int i = 0; i < t->ndim; i++) {
        json_t *x = json_array_get(sh, (size_t)i);
        if (!json_is_integer(x) || json_integer_value(x) < 0)
            return gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: tensor %s: shape[%d] is not a non-negative integer",
                                    file, key, i);
        t->shape[i] = (int64_t)json_integer_value(x);
        if (t->shape[i] == 0) zero = 1;
        else if (!zero && bytes > UINT64_MAX / (uint64_t)t->shape[i]) bytes = UINT64_MAX; /* saturate */
        else if (!zero) bytes *= (uint64_t)t->shape[i];
    }
    if (zero) bytes = 0;
    if (!json_is_array(off) || json_array_size(off) != 2 || !json_is_integer(json_array_get(off, 0)) ||
        !json_is_integer(json_array_get(off, 1)) || json_integer_value(json_array_get(off, 0)) < 0 ||
        json_integer_value(json_array_get(off, 1)) < 0)
        return gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: tensor %s: data_offsets must be two non-negative integers",
                                file, key);
    t->begin = (uint64_t)json_integer_value(json_array_get(off, 0));
    t->end = (uint64_t)json_integer_value(json_array_get(off, 1));
    if (t->begin > t->end || t->end > data_size)
        return gptoss_set_error(GPTOSS_ERR_FORMAT,
                                "%s: tensor %s: data_offsets [%llu,%llu] outside the data section (%llu bytes)",
                                file, key, (unsigned long long)t->begin, (unsigned long long)t->end,
                                (unsigned long long)data_size);
    if (t->end - t->begin != bytes) {
        char s[128];
        return gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: tensor %s: %llu data bytes, but %s %s needs %llu", file,
                                key, (unsigned long long)(t->end - t->begin), t->dtype,
                                st_shape_str(t->shape, t->ndim, s, sizeof s), (unsigned long long)bytes);
    }
    return GPTOSS_OK;
}

gptoss_status st_parse(const void *buf, size_t size, const char *name, st_file *f) {
    memset(f, 0, sizeof *f);
    const unsigned char *p = buf;
    if (size < 8)
        return gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: truncated (%zu bytes, no header length)", name, size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | p[i];
    if (n > size - 8)
        return gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: header length %llu exceeds the file size %zu (truncated?)",
                                name, (unsigned long long)n, size);
    if (n < 2 || n > ST_MAX_HEADER)
        return gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: implausible header length %llu", name,
                                (unsigned long long)n);
    json_error_t jerr;
    json_t *root = json_loadb((const char *)p + 8, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: corrupt header JSON at byte %d: %s", name,
                                jerr.position, jerr.text);
    gptoss_status st = GPTOSS_OK;
    if (!json_is_object(root)) {
        st = gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: header JSON is not an object", name);
        goto out;
    }
    uint64_t data_size = size - 8 - n;
    const unsigned char *data = p + 8 + n;
    size_t cap = json_object_size(root);
    f->tensors = calloc(cap ? cap : 1, sizeof *f->tensors);
    if (!f->tensors) {
        st = gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "%s: out of memory for %zu tensors", name, cap);
        goto out;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (!strcmp(key, "__metadata__")) {
            if (!json_is_object(v)) {
                st = gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: __metadata__ is not an object", name);
                goto out;
            }
            continue;
        }
        st_tensor *t = &f->tensors[f->n_tensors];
        memset(t, 0, sizeof *t);
        if ((st = parse_entry(name, key, v, data_size, t)) != GPTOSS_OK) goto out;
        t->data = data + t->begin;
        if (!(t->name = strdup(key))) {
            st = gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "%s: out of memory", name);
            goto out;
        }
        f->n_tensors++;
    }
    qsort(f->tensors, (size_t)f->n_tensors, sizeof *f->tensors, cmp_tensor);
    if (!(f->name = strdup(name))) st = gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "%s: out of memory", name);
out:
    json_decref(root);
    if (st != GPTOSS_OK) {
        free_tensors(f);
        free(f->name);
        f->name = NULL;
    }
    return st;
}

gptoss_status st_open(const char *path, const char *name, st_file *f) {
    memset(f, 0, sizeof *f);
    if (!name) name = path;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return gptoss_set_error(GPTOSS_ERR_IO, "%s: %s", name, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return gptoss_set_error(GPTOSS_ERR_IO, "%s: %s", name, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return gptoss_set_error(GPTOSS_ERR_IO, "%s: not a regular file", name);
    }
    size_t size = (size_t)sb.st_size;
    if (size < 8) {
        close(fd);
        return gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: truncated (%zu bytes, no header length)", name, size);
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED) return gptoss_set_error(GPTOSS_ERR_IO, "%s: mmap: %s", name, strerror(e));
    gptoss_status st = st_parse(map, size, name, f);
    if (st != GPTOSS_OK) {
        munmap(map, size);
        return st;
    }
    f->map = map;
    f->map_size = size;
    return GPTOSS_OK;
}

void st_close(st_file *f) {
    if (!f) return;
    free_tensors(f);
    if (f->map) munmap(f->map, f->map_size);
    free(f->name);
    memset(f, 0, sizeof *f);
}

const st_tensor *st_find(const st_file *f, const char *name) {
    if (!f->tensors) return NULL;
    st_tensor key = { 0 };
    key.name = (char *)name;
    return bsearch(&key, f->tensors, (size_t)f->n_tensors, sizeof *f->tensors, cmp_tensor);
}
