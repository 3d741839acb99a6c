/* sched.c - continuous-batching scheduler (see sched.h). */
#include "server/sched.h"
#include "util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PREFILL_CHUNK 256
#define KEY_TABLE 256 /* clients remembered for round-robin admission */

enum { SLOT_FREE = 0, SLOT_PREFILL, SLOT_DECODE };

typedef struct {
    gptoss_session *session;
    sched_job *job;
    chatgen *gen;
    int state;
} slot;

struct sched {
    gptoss_model *model;
    const gptoss_tokenizer *tok;
    int n_slots, max_queue, throttle_ms, vocab;
    slot *slots;
    float *logits;            /* [n_slots x vocab] */
    gptoss_session **batch_s; /* [n_slots] */
    int32_t *batch_id;        /* [n_slots] */
    int *batch_slot;          /* [n_slots] */
    gptoss_sampler **batch_smp; /* [n_slots] device sampling: samplers, chosen ids, logprobs */
    int32_t *batch_next;
    float *batch_lp;
    int prefill_rr;           /* round-robin cursor over prefilling slots */
    pthread_t thread;
    int thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    sched_job *head, *tail; /* queue, in arrival order */
    int queued, active, stopping;
    struct {
        char key[64];
        uint64_t last; /* admission counter when this client last got a slot */
    } keys[KEY_TABLE];
    uint64_t admissions;
    atomic_ullong decode_steps, decode_rows; /* for /metrics */
    /* sampling pool: after a batched step, chatgen_feed (sampling, parsing,
     * callbacks) runs for the sequences on several threads */
    pthread_t *workers;
    int n_workers, pool_quit, pool_items, pool_pending;
    uint64_t pool_gen;
    atomic_int pool_next;
    pthread_mutex_t pool_mu;
    pthread_cond_t pool_go, pool_done;
    gptoss_status *feed_st; /* [n_slots] */
    char (*feed_err)[256];  /* [n_slots] */
};

static uint64_t key_last(const sched *s, const char *key) {
    for (int i = 0; i < KEY_TABLE; i++)
        if (s->keys[i].last && !strcmp(s->keys[i].key, key)) return s->keys[i].last;
    return 0;
}

static void key_touch(sched *s, const char *key) {
    int victim = 0;
    for (int i = 0; i < KEY_TABLE; i++) {
        if (s->keys[i].last && !strcmp(s->keys[i].key, key)) {
            victim = i;
            break;
        }
        if (s->keys[i].last < s->keys[victim].last) victim = i; /* least recent (or empty) */
    }
    snprintf(s->keys[victim].key, sizeof s->keys[victim].key, "%s", key);
    s->keys[victim].last = ++s->admissions;
}

/* Unlinks the next job to admit (mu held): the oldest job of the client that
 * was served least recently. */
static sched_job *pick_job(sched *s) {
    sched_job *best = NULL, *best_prev = NULL, *prev = NULL;
    uint64_t best_t = 0;
    for (sched_job *j = s->head; j; prev = j, j = j->next) {
        uint64_t t = key_last(s, j->key);
        if (!best || t < best_t) best = j, best_prev = prev, best_t = t;
        if (t == 0) break; /* a client never served: nobody comes before it */
    }
    if (!best) return NULL;
    if (best_prev) best_prev->next = best->next; else s->head = best->next;
    if (s->tail == best) s->tail = best_prev;
    key_touch(s, best->key);
    return best;
}

static void finish_slot(sched *s, slot *sl, gptoss_status st, const char *err) {
    sched_job *j = sl->job;
    /* the slot counts as free before the client hears back, so that its next
     * request is not refused as over capacity */
    pthread_mutex_lock(&s->mu);
    s->active--;
    pthread_mutex_unlock(&s->mu);
    j->on_done(j->user, sl->gen, st, err);
    chatgen_free(sl->gen);
    sl->gen = NULL;
    sl->job = NULL;
    sl->state = SLOT_FREE;
}

static size_t common_prefix(const gptoss_session *ss, const int32_t *ids, size_t n) {
    int have = gptoss_session_length(ss);
    const int32_t *t = gptoss_session_tokens(ss);
    size_t k = 0, lim = (size_t)have < n ? (size_t)have : n;
    while (k < lim && t[k] == ids[k]) k++;
    return k;
}

/* Moves queued jobs into free slots (round-robin over clients); the slot
 * whose cache shares the longest prefix with the prompt is preferred. */
static void admit(sched *s) {
    for (;;) {
        pthread_mutex_lock(&s->mu);
        int free_slot = -1;
        for (int i = 0; i < s->n_slots; i++)
            if (s->slots[i].state == SLOT_FREE) free_slot = i;
        sched_job *j = free_slot >= 0 ? pick_job(s) : NULL;
        if (!j) {
            pthread_mutex_unlock(&s->mu);
            return;
        }
        s->queued--;
        s->active++;
        pthread_mutex_unlock(&s->mu);

        size_t best = 0;
        for (int i = 0; i < s->n_slots; i++) {
            if (s->slots[i].state != SLOT_FREE) continue;
            size_t c = common_prefix(s->slots[i].session, j->prompt, j->n_prompt);
            if (c > best) best = c, free_slot = i;
        }
        slot *sl = &s->slots[free_slot];
        sl->job = j;
        sl->state = SLOT_PREFILL;
        gptoss_status st = chatgen_create(s->model, sl->session, s->tok, &j->params, &j->cb, &sl->gen);
        if (st == GPTOSS_OK) st = chatgen_set_prompt(sl->gen, j->prompt, j->n_prompt);
        if (st != GPTOSS_OK) finish_slot(s, sl, st, gptoss_last_error());
    }
}

/* Prefill for the slots that are prefilling, round-robin, up to PREFILL_CHUNK
 * prompt tokens per step: short prompts start together, a long one advances a
 * chunk per step while the others keep decoding. */
static void prefill_step(sched *s) {
    size_t budget = PREFILL_CHUNK;
    for (int k = 0; k < s->n_slots && budget > 0; k++) {
        int i = (s->prefill_rr + k) % s->n_slots;
        slot *sl = &s->slots[i];
        if (sl->state != SLOT_PREFILL) continue;
        s->prefill_rr = (i + 1) % s->n_slots;
        size_t left = chatgen_prefill_left(sl->gen), take = left < budget ? left : budget;
        budget -= take;
        int done = 0;
        gptoss_status st = chatgen_prefill(sl->gen, take ? take : 1, &done);
        if (st != GPTOSS_OK)
            finish_slot(s, sl, st, gptoss_last_error());
        else if (done && chatgen_next(sl->gen) < 0)
            finish_slot(s, sl, GPTOSS_OK, NULL);
        else if (done)
            sl->state = SLOT_DECODE;
    }
}

/* Feeds the batch rows handed out by pool_next (any thread). */
static void feed_items(sched *s) {
    for (;;) {
        int k = atomic_fetch_add(&s->pool_next, 1);
        if (k >= s->pool_items) return;
        slot *sl = &s->slots[s->batch_slot[k]];
        s->feed_st[k] = chatgen_feed(sl->gen, s->logits + (size_t)k * (size_t)s->vocab);
        if (s->feed_st[k] != GPTOSS_OK) /* the message is thread-local: keep a copy */
            snprintf(s->feed_err[k], sizeof s->feed_err[k], "%s", gptoss_last_error());
    }
}

static void *pool_worker(void *arg) {
    sched *s = arg;
    uint64_t seen = 0;
    pthread_mutex_lock(&s->pool_mu);
    for (;;) {
        while (!s->pool_quit && s->pool_gen == seen) pthread_cond_wait(&s->pool_go, &s->pool_mu);
        if (s->pool_quit) break;
        seen = s->pool_gen;
        pthread_mutex_unlock(&s->pool_mu);
        feed_items(s);
        pthread_mutex_lock(&s->pool_mu);
        if (--s->pool_pending == 0) pthread_cond_signal(&s->pool_done);
    }
    pthread_mutex_unlock(&s->pool_mu);
    return NULL;
}

/* chatgen_feed for batch rows 0..n-1, on the pool when it helps. */
static void feed_all(sched *s, int n) {
    atomic_store(&s->pool_next, 0);
    s->pool_items = n;
    if (s->n_workers == 0 || n < 2) {
        feed_items(s);
        return;
    }
    pthread_mutex_lock(&s->pool_mu);
    s->pool_pending = s->n_workers;
    s->pool_gen++;
    pthread_cond_broadcast(&s->pool_go);
    pthread_mutex_unlock(&s->pool_mu);
    feed_items(s);
    pthread_mutex_lock(&s->pool_mu);
    while (s->pool_pending > 0) pthread_cond_wait(&s->pool_done, &s->pool_mu);
    pthread_mutex_unlock(&s->pool_mu);
}

/* One token for every decoding slot, in one batch. */
static void decode_step(sched *s) {
    int n = 0;
    for (int i = 0; i < s->n_slots; i++) {
        slot *sl = &s->slots[i];
        if (sl->state != SLOT_DECODE) continue;
        atomic_int *c = sl->job->params.cancel;
        if (c && atomic_load(c)) chatgen_abort(sl->gen, CHATLOOP_FINISH_CANCELLED);
        int32_t id = chatgen_next(sl->gen);
        if (id < 0) {
            finish_slot(s, sl, GPTOSS_OK, NULL);
            continue;
        }
        s->batch_s[n] = sl->session;
        s->batch_id[n] = id;
        s->batch_slot[n] = i;
        n++;
    }
    if (n == 0) return;
    atomic_fetch_add(&s->decode_steps, 1);
    atomic_fetch_add(&s->decode_rows, (unsigned long long)n);
    /* Sampled on the device when no row needs its logits (top logprobs, scripts). */
    int dev = 1;
    for (int k = 0; k < n; k++)
        if (!(s->batch_smp[k] = chatgen_device_sampler(s->slots[s->batch_slot[k]].gen))) dev = 0;
    gptoss_status st = dev ? gptoss_decode_sample(s->batch_s, s->batch_id, (size_t)n, s->batch_smp,
                                                  s->batch_next, s->batch_lp)
                           : gptoss_decode_batch(s->batch_s, s->batch_id, (size_t)n, s->logits);
    if (st != GPTOSS_OK) {
        char err[256];
        snprintf(err, sizeof err, "%s", gptoss_last_error());
        for (int k = 0; k < n; k++) {
            slot *sl = &s->slots[s->batch_slot[k]];
            chatgen_abort(sl->gen, CHATLOOP_FINISH_ERROR);
            finish_slot(s, sl, st, err);
        }
        return;
    }
    if (dev)
        for (int k = 0; k < n; k++) {
            s->feed_st[k] = chatgen_feed_id(s->slots[s->batch_slot[k]].gen, s->batch_next[k], s->batch_lp[k]);
            if (s->feed_st[k] != GPTOSS_OK)
                snprintf(s->feed_err[k], sizeof s->feed_err[k], "%s", gptoss_last_error());
        }
    else
        feed_all(s, n);
    for (int k = 0; k < n; k++) {
        slot *sl = &s->slots[s->batch_slot[k]];
        if (s->feed_st[k] != GPTOSS_OK)
            finish_slot(s, sl, s->feed_st[k], s->feed_err[k]);
        else if (chatgen_next(sl->gen) < 0)
            finish_slot(s, sl, GPTOSS_OK, NULL);
    }
}

static void *run(void *arg) {
    sched *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->stopping && !s->head && s->active == 0) pthread_cond_wait(&s->cv, &s->mu);
        int stopping = s->stopping;
        pthread_mutex_unlock(&s->mu);
        if (stopping) break;
        admit(s);
        prefill_step(s);
        decode_step(s);
        if (s->throttle_ms > 0) {
            struct timespec ts = {s->throttle_ms / 1000, (long)(s->throttle_ms % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    /* Shutting down: every job ends, cancelled. */
    for (int i = 0; i < s->n_slots; i++)
        if (s->slots[i].state != SLOT_FREE) {
            chatgen_abort(s->slots[i].gen, CHATLOOP_FINISH_CANCELLED);
            finish_slot(s, &s->slots[i], GPTOSS_ERR_CANCELLED, "server shutting down");
        }
    pthread_mutex_lock(&s->mu);
    sched_job *j = s->head;
    s->head = s->tail = NULL;
    s->queued = 0;
    pthread_mutex_unlock(&s->mu);
    while (j) {
        sched_job *next = j->next;
        j->on_done(j->user, NULL, GPTOSS_ERR_CANCELLED, "server shutting down");
        j = next;
    }
    return NULL;
}

gptoss_status sched_create(gptoss_model *m, const gptoss_tokenizer *t, int n_slots, int max_queue,
                           int threads, int throttle_ms, sched **out) {
    *out = NULL;
    if (n_slots < 1 || max_queue < 0)
        return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "scheduler: %d slots, queue %d",
                                n_slots, max_queue);
    sched *s = calloc(1, sizeof *s);
    if (!s) return gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "scheduler: out of memory");
    gptoss_model_info info;
    gptoss_model_get_info(m, &info);
    s->model = m;
    s->tok = t;
    s->n_slots = n_slots;
    s->max_queue = max_queue;
    s->throttle_ms = throttle_ms;
    s->vocab = info.vocab_size;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->slots = calloc((size_t)n_slots, sizeof *s->slots);
    s->logits = malloc(sizeof(float) * (size_t)n_slots * (size_t)s->vocab);
    s->batch_s = calloc((size_t)n_slots, sizeof *s->batch_s);
    s->batch_id = calloc((size_t)n_slots, sizeof *s->batch_id);
    s->batch_slot = calloc((size_t)n_slots, sizeof *s->batch_slot);
    s->batch_smp = calloc((size_t)n_slots, sizeof *s->batch_smp);
    s->batch_next = calloc((size_t)n_slots, sizeof *s->batch_next);
    s->batch_lp = calloc((size_t)n_slots, sizeof *s->batch_lp);
    s->feed_st = calloc((size_t)n_slots, sizeof *s->feed_st);
    s->feed_err = calloc((size_t)n_slots, sizeof *s->feed_err);
    pthread_mutex_init(&s->pool_mu, NULL);
    pthread_cond_init(&s->pool_go, NULL);
    pthread_cond_init(&s->pool_done, NULL);
    gptoss_status st = GPTOSS_OK;
    if (!s->slots || !s->logits || !s->batch_s || !s->batch_id || !s->batch_slot || !s->feed_st ||
        !s->feed_err || !s->batch_smp || !s->batch_next || !s->batch_lp) {
        st = gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "scheduler: out of memory");
        goto fail;
    }
    for (int i = 0; i < n_slots; i++)
        if ((st = gptoss_session_create(m, &s->slots[i].session)) != GPTOSS_OK) goto fail;
    /* sampling helpers: the scheduler thread plus up to 7 more, one core kept free */
    int nw = threads > 0 ? threads - 1 : cpu_count() - 1;
    if (threads <= 0 && nw > 7) nw = 7;
    if (nw > n_slots - 1) nw = n_slots - 1;
    if (nw > 0 && !(s->workers = calloc((size_t)nw, sizeof *s->workers))) nw = 0;
    for (int i = 0; i < nw; i++, s->n_workers++)
        if (pthread_create(&s->workers[i], NULL, pool_worker, s) != 0) break;
    if (pthread_create(&s->thread, NULL, run, s) != 0) {
        st = gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "scheduler: cannot start its thread");
        goto fail;
    }
    s->thread_started = 1;
    *out = s;
    return GPTOSS_OK;
fail:
    sched_destroy(s);
    return st;
}

int sched_submit(sched *s, sched_job *j) {
    pthread_mutex_lock(&s->mu);
    if (s->stopping || s->queued >= s->max_queue + (s->n_slots - s->active)) {
        pthread_mutex_unlock(&s->mu);
        return -1;
    }
    j->next = NULL;
    if (s->tail) s->tail->next = j; else s->head = j;
    s->tail = j;
    s->queued++;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

void sched_counts(sched *s, int *active, int *queued) {
    pthread_mutex_lock(&s->mu);
    *active = s->active;
    *queued = s->queued;
    pthread_mutex_unlock(&s->mu);
}

void sched_decode_stats(sched *s, unsigned long long *steps, unsigned long long *rows) {
    *steps = atomic_load(&s->decode_steps);
    *rows = atomic_load(&s->decode_rows);
}

void sched_stop(sched *s) {
    if (!s || !s->thread_started) return;
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    s->thread_started = 0;
}

void sched_destroy(sched *s) {
    if (!s) return;
    sched_stop(s);
    pthread_mutex_lock(&s->pool_mu);
    s->pool_quit = 1;
    pthread_cond_broadcast(&s->pool_go);
    pthread_mutex_unlock(&s->pool_mu);
    for (int i = 0; i < s->n_workers; i++) pthread_join(s->workers[i], NULL);
    free(s->workers);
    free(s->feed_st);
    free(s->feed_err);
    pthread_mutex_destroy(&s->pool_mu);
    pthread_cond_destroy(&s->pool_go);
    pthread_cond_destroy(&s->pool_done);
    for (int i = 0; s->slots && i < s->n_slots; i++)
        if (s->slots[i].session) gptoss_session_free(s->slots[i].session);
    free(s->slots);
    free(s->logits);
    free(s->batch_s);
    free(s->batch_smp);
    free(s->batch_next);
    free(s->batch_lp);
    free(s->batch_id);
    free(s->batch_slot);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}
