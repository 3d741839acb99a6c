/* membw.h - host memory bandwidth probe for `gptoss bench`. */
#ifndef GPTOSS_CLI_MEMBW_H
#define GPTOSS_CLI_MEMBW_H

#include <stddef.h>

/* Streaming-read bandwidth of host memory in GB/s (1e9 bytes/s): n_threads
 * threads (0 = all cores) each sum their share of a buffer of `bytes` bytes
 * (0 = max(1 GiB, 4 x the last-level cache), capped at a quarter of the
 * available memory); the best of `reps` passes. *buffer_bytes receives the
 * size used (may be NULL). Returns a value <= 0 when it cannot measure. */
double membw_measure(int n_threads, size_t bytes, int reps, size_t *buffer_bytes);

#endif
