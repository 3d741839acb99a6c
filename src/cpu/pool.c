/* pool.c - a small fixed thread pool.
 *
 * A job is one 64-bit atomic word: generation (16 bits) | task count (24) |
 * next task index (24). Workers and the calling thread claim task indices
 * with compare-and-swap on that word, so a claim can never land in a job
 * other than the one it read, and the caller never waits for a worker that
 * has not started: on a machine whose cores are busy with other processes a
 * late worker simply finds no task left. The caller waits only for tasks
 * that were claimed (a completion counter). Waiting threads spin for a few
 * tens of microseconds (the next job of a forward pass usually follows that
 * quickly) and then sleep on a condition variable, so an idle pool costs
 * nothing. */
#include "cpu/cpu_internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#define SPIN_ITERS 2000 /* ~50 us of pause instructions */
#define MAX_TASKS 0xFFFFFF

#define JOB(g, n, i) (((uint64_t)(g) << 48) | ((uint64_t)(n) << 24) | (uint64_t)(i))
#define JOB_GEN(j) ((unsigned)((j) >> 48))
#define JOB_N(j) ((int)(((j) >> 24) & MAX_TASKS))
#define JOB_NEXT(j) ((int)((j) & MAX_TASKS))

struct cpu_pool {
    int n_threads;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t wake, finished;
    _Atomic uint64_t job;
    atomic_int done;         /* tasks of the current job completed */
    atomic_int sleepers;     /* workers blocked on `wake` */
    atomic_int main_waiting; /* the caller is blocked on `finished` */
    atomic_int shutdown;
    cpu_task_fn fn;          /* of the current job; stable while any of its tasks runs */
    void *ctx;
};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Claims and runs tasks of the current job until none is left; returns the
 * generation of the job found exhausted. */
static unsigned work(cpu_pool *p, int thread) {
    uint64_t j = atomic_load(&p->job);
    for (;;) {
        int n = JOB_N(j), i = JOB_NEXT(j);
        if (i >= n) return JOB_GEN(j);
        if (!atomic_compare_exchange_weak(&p->job, &j, j + 1)) continue;
        p->fn(p->ctx, i, thread);
        if (atomic_fetch_add(&p->done, 1) + 1 == n) {
            pthread_mutex_lock(&p->mu);
            if (atomic_load(&p->main_waiting)) pthread_cond_signal(&p->finished);
            pthread_mutex_unlock(&p->mu);
        }
        j = atomic_load(&p->job);
    }
}

typedef struct {
    cpu_pool *pool;
    int index;
} worker_arg;

static void *worker_main(void *arg) {
    worker_arg *wa = arg;
    cpu_pool *p = wa->pool;
    int index = wa->index;
    free(wa);
    for (;;) {
        unsigned seen = work(p, index);
        int spins = 0;
        while (JOB_GEN(atomic_load(&p->job)) == seen && spins++ < SPIN_ITERS) cpu_relax();
        if (JOB_GEN(atomic_load(&p->job)) == seen) {
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleepers, 1);
            while (JOB_GEN(atomic_load(&p->job)) == seen && !atomic_load(&p->shutdown))
                pthread_cond_wait(&p->wake, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->shutdown)) return NULL;
    }
}

cpu_pool *cpu_pool_create(int n_threads) {
    if (n_threads < 1) n_threads = 1;
    cpu_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n_threads = 1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->finished, NULL);
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    if (!p->threads) {
        cpu_pool_destroy(p);
        return NULL;
    }
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa) {
            cpu_pool_destroy(p);
            return NULL;
        }
        wa->pool = p;
        wa->index = i;
        if (pthread_create(&p->threads[i], NULL, worker_main, wa) != 0) {
            free(wa);
            cpu_pool_destroy(p);
            return NULL;
        }
        p->n_threads = i + 1;
    }
    return p;
}

int cpu_pool_threads(const cpu_pool *p) { return p->n_threads; }

void cpu_pool_run(cpu_pool *p, cpu_task_fn fn, void *ctx, int n_tasks) {
    if (n_tasks <= 0) return;
    if (p->n_threads == 1 || n_tasks == 1 || n_tasks > MAX_TASKS) {
        for (int t = 0; t < n_tasks; t++) fn(ctx, t, 0);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store(&p->done, 0);
    unsigned gen = (JOB_GEN(atomic_load(&p->job)) + 1) & 0xFFFF;
    atomic_store(&p->job, JOB(gen, n_tasks, 0));
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->mu);
    }
    work(p, 0);
    int spins = 0;
    while (atomic_load(&p->done) < n_tasks && spins++ < SPIN_ITERS) cpu_relax();
    if (atomic_load(&p->done) < n_tasks) {
        pthread_mutex_lock(&p->mu);
        atomic_store(&p->main_waiting, 1);
        while (atomic_load(&p->done) < n_tasks) pthread_cond_wait(&p->finished, &p->mu);
        atomic_store(&p->main_waiting, 0);
        pthread_mutex_unlock(&p->mu);
    }
}

void cpu_pool_destroy(cpu_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->shutdown, 1);
    atomic_store(&p->job, JOB((JOB_GEN(atomic_load(&p->job)) + 1) & 0xFFFF, 0, 0));
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n_threads; i++) pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->finished);
    pthread_mutex_destroy(&p->mu);
    free(p->threads);
    free(p);
}
