/* sched.h - the server's scheduler: one thread owns the model and its
 * sessions (slots). Jobs wait in a bounded queue, are admitted into free
 * slots, prefill in chunks (at most 256 prompt tokens per step, shared
 * round-robin by the slots that are prefilling, so a long prompt never stalls
 * the others for long) and then decode TOGETHER: every step appends one token to
 * every decoding slot through one gptoss_decode_batch call (continuous
 * batching: jobs join between steps and leave when they finish).
 * Admission is round-robin over clients (sched_job.key): the next job is the
 * oldest one of the client that was admitted least recently, so one client's
 * burst cannot starve another's request. */
#ifndef GPTOSS_SERVER_SCHED_H
#define GPTOSS_SERVER_SCHED_H

#include "chatloop.h"
#include "gptoss.h"

typedef struct sched_job sched_job;
struct sched_job {
    const int32_t *prompt; /* owned by the submitter; valid until on_done */
    size_t n_prompt;
    chatloop_params params;
    chatloop_callbacks cb; /* called from the scheduler thread */
    /* Called once, from the scheduler thread, when the job has finished (g may be
     * NULL when it never started; st/err say why it failed). The scheduler does
     * not touch the job afterwards. */
    void (*on_done)(void *user, chatgen *g, gptoss_status st, const char *err);
    void *user;
    char key[64];    /* the client, for round-robin admission ("" = anonymous) */
    sched_job *next; /* queue link (scheduler's) */
};

typedef struct sched sched;

/* n_slots sessions of m (loaded with max_sequences >= n_slots). threads: how
 * many threads sample a batch's tokens (0 = min(8, cores)). throttle_ms:
 * testing aid, a pause after every step. */
gptoss_status sched_create(gptoss_model *m, const gptoss_tokenizer *t, int n_slots, int max_queue,
                           int threads, int throttle_ms, sched **out);
/* Queues a job. Returns 0, or -1 when the queue is full or shutting down. */
int sched_submit(sched *s, sched_job *j);
void sched_counts(sched *s, int *active, int *queued);
/* Batched decode steps so far, and the sequences they decoded (summed). */
void sched_decode_stats(sched *s, unsigned long long *steps, unsigned long long *rows);
/* Finishes every job (cancelled) and stops the thread; later submits fail. */
void sched_stop(sched *s);
/* sched_stop, then frees everything. */
void sched_destroy(sched *s);

#endif
