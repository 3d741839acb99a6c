/* fuzz_safetensors.c - libFuzzer target: arbitrary bytes as a whole .safetensors
 * image through the header parser. Every tensor it accepts must lie inside the
 * buffer and hold exactly dtype size * product(shape) bytes. */
#include "safetensors.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* a private copy, so reads past `size` are caught by ASan */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);
    st_file f;
    if (st_parse(buf, size, "fuzz", &f) == GPTOSS_OK) {
        for (int i = 0; i < f.n_tensors; i++) {
            const st_tensor *t = &f.tensors[i];
            const uint8_t *p = t->data;
            if (p < buf || t->end < t->begin || p + (t->end - t->begin) > buf + size) abort();
            uint64_t n = (uint64_t)t->elem_size;
            for (int d = 0; d < t->ndim; d++) n *= (uint64_t)t->shape[d];
            if (n != t->end - t->begin) abort();
            if (st_find(&f, t->name) != t) abort();
            volatile uint8_t sink = 0;
            if (t->end > t->begin) sink ^= p[0] ^ p[t->end - t->begin - 1];
            (void)sink;
        }
        st_close(&f);
    } else if (f.tensors || f.name) {
        abort(); /* failure must leave nothing allocated */
    }
    free(buf);
    return 0;
}
