/*
 * A complete chimney receive delivery layer in C, written against include/chimney.h.
 *
 * It is the contract's delivery algorithm (docs/spec.md §5), one connection at a time:
 *
 *   bytes in ──► ring buffer ──FILL──► posted requests (FIFO) ──► receive_complete
 *                    │
 *                    └── nothing posted ──INDICATE──► receive_indicate (one pool NBL)
 *
 *   - posted requests are queued FIFO, linked through MiniportReserved[0];
 *   - full requests complete at once, several per call (batched), a partially filled
 *     push-mode request completes on PSH, on the push timer or on FIN;
 *   - with nothing posted, data is indicated from a small NBL pool; what the host refuses
 *     stays buffered, and nothing more is indicated until the host posts;
 *   - a call the host makes from inside an upcall (a post from a completion) is only queued,
 *     and the loop picks it up when the upcall returns;
 *   - FIN: TcpIndicateDisconnect once every byte before it is consumed, then later posts
 *     complete INVALID_STATE; RST and abortive disconnect complete everything
 *     REQUEST_ABORTED; terminate hands undelivered bytes back as BufferedData.
 *
 * Build: cc -shared -fPIC -O2 -I../../include target.c -o libtarget.so
 * Check: chimney check --target ./libtarget.so
 *
 * FAULT, when defined, breaks one rule on purpose (see Makefile and docs/conformance.md).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chimney.h"

#define MAX_CONNS 4096
#define POOL_NBLS 16
#define POOL_NBL_BYTES 65536
#define RING_BYTES (1u << 20)

enum phase { OPEN, DISCONNECTED, ABORTED };

/* A target NBL: the NBL, its NB and one MDL over `bytes`, allocated together. */
struct tnbl {
    ChimneyNetBufferList nbl;
    ChimneyNetBuffer nb;
    ChimneyMdl mdl;
    int pooled;     /* from the indication pool (else BufferedData, freed on return) */
    int out;        /* the host holds it */
    uint8_t bytes[];
};

struct conn {
    int used;
    enum phase phase;
    int fin;             /* the peer's FIN arrived */
    int abort_event;     /* TcpIndicateAbort still to indicate (RST) */
    int busy;            /* an upcall is running: only queue */
    int in_complete;     /* that upcall is a completion */
    int blocked;         /* an indication was refused: no more until a post */
    uint64_t posts;      /* posts taken so far (a post during an indication lifts a refusal) */
    int upload;          /* a mandatory upload was requested */
    uint64_t upload_at;  /* posts taken by then: later ones complete UPLOAD_IN_PROGRESS */
    int urgent;          /* that request was for urgent data: nothing more is delivered */
    int pool_wait;       /* an indication waits for the host to return pool NBLs */
    uint64_t received;   /* stream bytes taken in */
    uint64_t delivered;  /* stream bytes completed or consumed by indications */
    uint64_t psh_mark;   /* end of the newest segment that carried PSH */
    uint32_t rcv_nxt;
    uint32_t ind_size;
    ChimneyNetBufferList *head, *tail; /* posted FIFO */
    uint32_t placed;     /* bytes placed in the head */
    uint8_t *ring;       /* buffered in-order bytes */
    size_t start, len;
    uint64_t push_deadline;
    int kick;            /* run again at the next timer call */
};

struct target {
    const ChimneyHostOps *host;
    uint64_t push_ns;
    uint64_t now;
    struct conn conns[MAX_CONNS];
    struct tnbl *pool[POOL_NBLS];
#if defined(FAULT_COMPLETE_AFTER_TERMINATE) || defined(MISUSE)
    ChimneyNetBufferList *late;
    uint32_t late_conn;
#endif
};

/* ---- NBL helpers ---------------------------------------------------------------------- */

static struct tnbl *tnbl_new(size_t bytes, int pooled) {
    struct tnbl *t = calloc(1, sizeof(*t) + bytes);
    if (!t) return NULL;
    t->mdl.mapped_system_va = t->bytes;
    t->mdl.byte_count = (uint32_t)bytes;
    t->nb.mdl_chain = &t->mdl;
    t->nb.current_mdl = &t->mdl;
    t->nbl.first_net_buffer = &t->nb;
    t->pooled = pooled;
    return t;
}

static struct tnbl *tnbl_of(ChimneyNetBufferList *n) {
    return (struct tnbl *)((char *)n - offsetof(struct tnbl, nbl));
}

static uint32_t capacity(ChimneyNetBufferList *n) { return n->first_net_buffer->data_length; }

static ChimneyNetBufferList *next_posted(ChimneyNetBufferList *n) {
    return (ChimneyNetBufferList *)n->miniport_reserved[0];
}

/* Free room in the posted requests (zero-byte requests hold none). */
static size_t room(struct conn *c) {
    size_t r = 0;
    for (ChimneyNetBufferList *n = c->head; n; n = next_posted(n)) r += capacity(n);
    return r - c->placed;
}

/* The head is a partially filled push request: bytes placed, or pre-filled by the host. */
static int head_partial_push(struct conn *c) {
    ChimneyNetBufferList *h = c->head;
    return h && capacity(h) && !h->info[CHIMNEY_INFO_RECEIVE_NO_PUSH] &&
           (c->placed || h->info[CHIMNEY_INFO_RECEIVE_BYTES_TRANSFERRED]);
}

/* Copies `len` bytes from the ring (at `from`) into request `n` at `at` bytes past its data
 * start, walking its MDL chain. */
static void place(struct conn *c, ChimneyNetBufferList *n, uint32_t at, size_t from, size_t len) {
    ChimneyNetBuffer *nb = n->first_net_buffer;
    size_t skip = nb->data_offset + at;
    for (ChimneyMdl *m = nb->mdl_chain; m && len; m = m->next) {
        if (skip >= m->byte_count) { skip -= m->byte_count; continue; }
        size_t k = m->byte_count - skip;
        if (k > len) k = len;
        for (size_t i = 0; i < k; i++) m->mapped_system_va[skip + i] = c->ring[(c->start + from + i) % RING_BYTES];
        from += k;
        len -= k;
        skip = 0;
    }
}

static void consume(struct conn *c, size_t n) {
    c->start = (c->start + n) % RING_BYTES;
    c->len -= n;
}

/* Bytes placed in the head but not yet completed are not delivered yet. */

/* Unlinks the head request and finishes it: status, byte count, data start advanced. */
static ChimneyNetBufferList *take_head(struct conn *c, uint32_t status) {
    ChimneyNetBufferList *n = c->head;
    c->head = (ChimneyNetBufferList *)n->miniport_reserved[0];
    if (!c->head) c->tail = NULL;
    n->miniport_reserved[0] = 0;
    n->next = NULL;
    n->status = status;
#ifdef FAULT_BYTE_COUNT
    n->info[CHIMNEY_INFO_BYTES_TRANSFERRED] = c->placed ? c->placed - 1 : 0;
#else
    n->info[CHIMNEY_INFO_BYTES_TRANSFERRED] = c->placed;
#endif
    chimney_advance_data_start(n->first_net_buffer, c->placed);
    c->delivered += c->placed;
    c->placed = 0;
    return n;
}

static void append(ChimneyNetBufferList **h, ChimneyNetBufferList **t, ChimneyNetBufferList *n) {
    n->next = NULL;
    if (*t) (*t)->next = n; else *h = n;
    *t = n;
}

/* ---- upcalls (never two at once on a connection) ---------------------------------------- */

static void complete(struct target *t, uint32_t id, ChimneyNetBufferList *chain) {
    struct conn *c = &t->conns[id];
#ifdef FAULT_FIFO
    /* Fault: the second request of a batch goes back before the first. */
    if (chain && chain->next) {
        ChimneyNetBufferList *second = chain->next;
        chain->next = second->next;
        second->next = chain;
        chain = second;
    }
#endif
    c->busy = 1;
    c->in_complete = 1;
    c->push_deadline = CHIMNEY_NO_DEADLINE;
    t->host->receive_complete(t->host->ctx, id, chain);
#ifdef MISUSE
    /* Misuse: the same request completed a second time. */
    t->host->receive_complete(t->host->ctx, id, chain);
#endif
    c->in_complete = 0;
    c->busy = 0;
}

static void event(struct target *t, uint32_t id, uint32_t ev) {
    struct conn *c = &t->conns[id];
    c->busy = 1;
    t->host->event_indicate(t->host->ctx, id, ev, 0);
    c->busy = 0;
}

/* One indication of the buffered bytes; returns 1 if made. */
static int indicate(struct target *t, uint32_t id) {
    struct conn *c = &t->conns[id];
    struct tnbl *p = NULL;
    for (int i = 0; i < POOL_NBLS; i++)
        if (!t->pool[i]->out) { p = t->pool[i]; break; }
    if (!p) { c->pool_wait = 1; return 0; } /* the pool is out: wait for returns */
    size_t len = c->len < POOL_NBL_BYTES ? c->len : POOL_NBL_BYTES;
    if (c->ind_size && len > c->ind_size) len = c->ind_size;
    for (size_t i = 0; i < len; i++) p->bytes[i] = c->ring[(c->start + i) % RING_BYTES];
    p->nb.data_offset = 0;
    p->nb.current_mdl = &p->mdl;
    p->nb.current_mdl_offset = 0;
    p->nb.data_length = (uint32_t)len;
    p->nbl.status = CHIMNEY_STATUS_SUCCESS;
    p->nbl.next = NULL;
    uint32_t consumed = 0;
    uint64_t posts = c->posts;
    c->busy = 1;
    uint32_t r = t->host->receive_indicate(t->host->ctx, id, &p->nbl, CHIMNEY_STATUS_SUCCESS, &consumed);
    c->busy = 0;
    if (r == CHIMNEY_STATUS_SUCCESS) {
        p->out = 1;
        consumed = (uint32_t)len;
    } else if (consumed < len) {
        /* Refused (in part): keep the rest; no indication until the host posts, unless it
         * posted during this very indication. */
        c->blocked = c->posts == posts;
    }
    if (consumed > len) consumed = (uint32_t)len;
    consume(c, consumed);
    c->delivered += consumed;
    return 1;
}

/* ---- the delivery loop ------------------------------------------------------------------- */

static void run(struct target *t, uint32_t id) {
    struct conn *c = &t->conns[id];
    if (c->busy) return; /* the running upcall's caller loops again when it returns */
    int refused_once = 0, closed_round = 0, zero_round = 0;
    for (;;) {
        ChimneyNetBufferList *dh = NULL, *dt = NULL;
        if (c->phase == ABORTED) {
            if (c->abort_event) { c->abort_event = 0; event(t, id, CHIMNEY_EVENT_ABORT); continue; }
            if (!closed_round) {
                while (c->head) append(&dh, &dt, take_head(c, CHIMNEY_STATUS_REQUEST_ABORTED));
                closed_round = 1;
                if (dh) { complete(t, id, dh); continue; }
            }
            break;
        }
        if (c->phase == DISCONNECTED) {
            if (!closed_round) {
                while (c->head) append(&dh, &dt, take_head(c, CHIMNEY_STATUS_INVALID_STATE));
                closed_round = 1;
                if (dh) { complete(t, id, dh); continue; }
            }
            break;
        }
        if (c->upload) {
            /* A mandatory upload was requested: posts made since complete UPLOAD_IN_PROGRESS
             * with no data; earlier ones wait for the terminate (nothing new is delivered
             * after a request for urgent data). */
            ChimneyNetBufferList *prev = NULL, *n = c->head;
            while (n) {
                ChimneyNetBufferList *next = next_posted(n);
                if (n->miniport_reserved[1] > c->upload_at && !(n == c->head && c->placed)) {
                    if (prev) prev->miniport_reserved[0] = (uintptr_t)next; else c->head = next;
                    if (c->tail == n) c->tail = prev;
                    n->miniport_reserved[0] = 0;
                    n->next = NULL;
                    n->status = CHIMNEY_STATUS_UPLOAD_IN_PROGRESS;
                    n->info[CHIMNEY_INFO_BYTES_TRANSFERRED] = 0;
                    append(&dh, &dt, n);
                } else {
                    prev = n;
                }
                n = next;
            }
            if (dh) { complete(t, id, dh); continue; }
            if (c->urgent) break;
        }
        /* FILL: buffered bytes into the posted requests, oldest first. */
        while (c->head) {
            uint32_t cap = capacity(c->head);
            if (cap == 0) {
                /* A zero-byte request takes no data; it completes once data is there. One
                 * round per run: a host re-posting one from every completion would loop. */
                if (!c->len) break;
                if (zero_round) { c->kick = 1; break; }
                append(&dh, &dt, take_head(c, CHIMNEY_STATUS_SUCCESS));
                continue;
            }
            size_t k = cap - c->placed;
            if (k > c->len) k = c->len;
            place(c, c->head, c->placed, 0, k);
            c->placed += (uint32_t)k;
            consume(c, k);
            if (c->placed < cap) break;
            append(&dh, &dt, take_head(c, CHIMNEY_STATUS_SUCCESS));
        }
        /* A partially filled push request completes when it holds a byte before the newest
         * PSH, and on FIN once every byte is placed. */
        if (c->head && c->placed && capacity(c->head)) {
            int push_mode = !c->head->info[CHIMNEY_INFO_RECEIVE_NO_PUSH];
#ifdef FAULT_IGNORE_PSH
            push_mode = 0;
#endif
            if ((push_mode && c->psh_mark > c->delivered) || (c->fin && !c->len))
                append(&dh, &dt, take_head(c, CHIMNEY_STATUS_SUCCESS));
        }
        if (dh) {
            for (ChimneyNetBufferList *n = dh; n; n = n->next)
                if (capacity(n) == 0) zero_round = 1;
            complete(t, id, dh);
            continue;
        }
        if (c->fin && !c->len && !c->placed) {
            c->phase = DISCONNECTED;
            event(t, id, CHIMNEY_EVENT_DISCONNECT);
            continue;
        }
        /* INDICATE: no posted room, data waiting, no refusal pending. */
        if (!room(c) && c->len && !c->blocked && !refused_once) {
            size_t before = c->len;
            if (!indicate(t, id)) break;
            if (c->len == before) refused_once = 1;
            continue;
        }
        break;
    }
    /* The push timer runs while the head is a partially filled push request. */
    if (c->phase == OPEN && head_partial_push(c)) {
        if (c->push_deadline == CHIMNEY_NO_DEADLINE) c->push_deadline = t->now + t->push_ns;
    } else {
        c->push_deadline = CHIMNEY_NO_DEADLINE;
    }
    if (refused_once && c->len && !room(c) && !c->blocked) c->kick = 1;
}

/* ---- entry points ---------------------------------------------------------------------- */

static struct conn *conn_of(struct target *t, uint32_t id) {
    if (id >= MAX_CONNS || !t->conns[id].used) return NULL;
    return &t->conns[id];
}

static void *create(const ChimneyHostOps *host, uint32_t push_ms) {
    struct target *t = calloc(1, sizeof(*t));
    if (!t) return NULL;
    t->host = host;
    t->push_ns = (uint64_t)push_ms * 1000000u;
    for (int i = 0; i < POOL_NBLS; i++) {
        t->pool[i] = tnbl_new(POOL_NBL_BYTES, 1);
        if (!t->pool[i]) return NULL;
    }
    return t;
}

static void destroy(void *tp) {
    struct target *t = tp;
    for (uint32_t i = 0; i < MAX_CONNS; i++) free(t->conns[i].ring);
    for (int i = 0; i < POOL_NBLS; i++) free(t->pool[i]);
    free(t);
}

static uint32_t initiate_offload(void *tp, uint64_t now, uint32_t id, const ChimneyOffloadState *s) {
    struct target *t = tp;
    t->now = now;
    if (id >= MAX_CONNS || t->conns[id].used) return CHIMNEY_STATUS_FAILURE;
    struct conn *c = &t->conns[id];
    uint8_t *ring = c->ring ? c->ring : malloc(RING_BYTES);
    if (!ring) return CHIMNEY_STATUS_RESOURCES;
    memset(c, 0, sizeof(*c));
    c->ring = ring;
    c->used = 1;
    c->push_deadline = CHIMNEY_NO_DEADLINE;
    c->rcv_nxt = s->rcv_nxt;
    c->ind_size = s->rcv_indication_size;
    c->fin = s->state == CHIMNEY_TCP_CLOSE_WAIT;
    /* Copy the host's BufferedData; keep no pointer to it. */
    for (ChimneyNetBufferList *n = s->buffered_data; n; n = n->next) {
        ChimneyNetBuffer *nb = n->first_net_buffer;
        size_t skip = nb->data_offset, left = nb->data_length;
        for (ChimneyMdl *m = nb->mdl_chain; m && left; m = m->next) {
            if (skip >= m->byte_count) { skip -= m->byte_count; continue; }
            size_t k = m->byte_count - skip;
            if (k > left) k = left;
            if (c->len + k > RING_BYTES) { c->used = 0; return CHIMNEY_STATUS_RESOURCES; }
            for (size_t i = 0; i < k; i++) c->ring[(c->start + c->len + i) % RING_BYTES] = m->mapped_system_va[skip + i];
            c->len += k;
            left -= k;
            skip = 0;
        }
    }
    c->received = c->len;
    /* Buffered bytes are offered at the first timer call: no upcall before the offload
     * has completed. */
    c->kick = c->len > 0 || c->fin;
    return CHIMNEY_STATUS_SUCCESS;
}

static uint32_t receive(void *tp, uint64_t now, uint32_t id, ChimneyNetBufferList *nbls) {
    struct target *t = tp;
    struct conn *c = conn_of(t, id);
    if (!c) return CHIMNEY_STATUS_INVALID_STATE;
    if (now > t->now) t->now = now;
#ifdef MISUSE
    /* Misuse: a NULL chain, and an NBL that is not chimney's, completed as requests. */
    t->host->receive_complete(t->host->ctx, id, NULL);
    ChimneyNetBufferList fake;
    memset(&fake, 0, sizeof(fake));
    t->host->receive_complete(t->host->ctx, id, &fake);
#endif
    c->posts++;
    while (nbls) {
        ChimneyNetBufferList *n = nbls;
        nbls = n->next;
        n->next = NULL;
        n->miniport_reserved[0] = 0;
        n->miniport_reserved[1] = c->posts;
        if (c->tail) c->tail->miniport_reserved[0] = (uintptr_t)n; else c->head = n;
        c->tail = n;
    }
    c->blocked = 0;
#ifdef FAULT_REENTRANT
    if (c->in_complete) c->busy = 0; /* Fault: serves a post made inside a completion at once. */
#endif
    run(t, id); /* does nothing while an upcall runs: the loop below it picks the posts up */
    return CHIMNEY_STATUS_PENDING;
}

static uint32_t receive_return(void *tp, uint64_t now, ChimneyNetBufferList *nbls) {
    struct target *t = tp;
    if (now > t->now) t->now = now;
    while (nbls) {
        ChimneyNetBufferList *n = nbls;
        nbls = n->next;
        struct tnbl *p = tnbl_of(n);
        if (p->pooled) p->out = 0; else free(p);
    }
    /* Connections that waited for the pool go again at the next timer call. */
    for (uint32_t id = 0; id < MAX_CONNS; id++)
        if (t->conns[id].used && t->conns[id].pool_wait) {
            t->conns[id].pool_wait = 0;
            t->conns[id].kick = 1;
        }
    return CHIMNEY_STATUS_SUCCESS;
}

static uint32_t terminate_offload(void *tp, uint64_t now, uint32_t id, ChimneyDelegatedState *out) {
    struct target *t = tp;
    struct conn *c = conn_of(t, id);
    if (!c) return CHIMNEY_STATUS_INVALID_STATE;
    if (now > t->now) t->now = now;
    c->push_deadline = CHIMNEY_NO_DEADLINE;
    while (c->head) {
        ChimneyNetBufferList *dh = NULL, *dt = NULL;
        while (c->head) {
            uint32_t st = c->placed ? CHIMNEY_STATUS_SUCCESS : CHIMNEY_STATUS_UPLOAD_IN_PROGRESS;
            append(&dh, &dt, take_head(c, st));
        }
#if defined(FAULT_COMPLETE_AFTER_TERMINATE) || defined(MISUSE)
        t->late = dh; /* Fault: remembers a request it returns now, to complete it again later. */
        t->late_conn = id;
#endif
        complete(t, id, dh); /* posts made inside it are completed by the next round */
    }
    ChimneyNetBufferList *bh = NULL, *bt = NULL;
    if (c->phase != ABORTED) {
        while (c->len) {
            size_t k = c->len < POOL_NBL_BYTES ? c->len : POOL_NBL_BYTES;
            struct tnbl *p = tnbl_new(k, 0);
            if (!p) break;
            for (size_t i = 0; i < k; i++) p->bytes[i] = c->ring[(c->start + i) % RING_BYTES];
            p->nb.data_length = (uint32_t)k;
            p->out = 1;
            append(&bh, &bt, &p->nbl);
            consume(c, k);
        }
    }
    out->state = c->phase == ABORTED ? 0 : c->fin ? CHIMNEY_TCP_CLOSE_WAIT : CHIMNEY_TCP_ESTABLISHED;
    out->rcv_nxt = c->rcv_nxt;
    out->buffered_data = bh;
    c->used = 0;
    c->len = 0;
    return CHIMNEY_STATUS_SUCCESS;
}

static uint32_t receive_data(void *tp, uint64_t now, uint32_t id, const uint8_t *data, size_t len, bool psh) {
    struct target *t = tp;
    struct conn *c = conn_of(t, id);
    if (!c || c->fin || c->phase != OPEN) return CHIMNEY_STATUS_INVALID_STATE;
    if (c->len + len > RING_BYTES) return CHIMNEY_STATUS_RESOURCES;
    if (now > t->now) t->now = now;
    for (size_t i = 0; i < len; i++) c->ring[(c->start + c->len + i) % RING_BYTES] = data[i];
    c->len += len;
    c->received += len;
    c->rcv_nxt += (uint32_t)len;
    if (psh) c->psh_mark = c->received;
#ifdef FAULT_INDICATE_WHILE_POSTED
    if (c->head && capacity(c->head) && !c->placed) indicate(t, id); /* Fault: indicates although a request waits. */
#endif
    /* New data restarts a running push timer. */
    if (c->push_deadline != CHIMNEY_NO_DEADLINE) c->push_deadline = t->now + t->push_ns;
    run(t, id);
    return CHIMNEY_STATUS_SUCCESS;
}

static uint32_t receive_fin(void *tp, uint64_t now, uint32_t id) {
    struct target *t = tp;
    struct conn *c = conn_of(t, id);
    if (!c || c->fin || c->phase != OPEN) return CHIMNEY_STATUS_INVALID_STATE;
    if (now > t->now) t->now = now;
    c->fin = 1;
    c->rcv_nxt += 1;
    run(t, id);
    return CHIMNEY_STATUS_SUCCESS;
}

static uint32_t receive_rst(void *tp, uint64_t now, uint32_t id) {
    struct target *t = tp;
    struct conn *c = conn_of(t, id);
    if (!c || c->phase == ABORTED) return CHIMNEY_STATUS_INVALID_STATE;
    if (now > t->now) t->now = now;
    c->phase = ABORTED;
    c->abort_event = 1;
    c->len = 0;
    run(t, id);
    return CHIMNEY_STATUS_SUCCESS;
}

static uint32_t abortive_disconnect(void *tp, uint64_t now, uint32_t id) {
    struct target *t = tp;
    struct conn *c = conn_of(t, id);
    if (!c) return CHIMNEY_STATUS_INVALID_STATE;
    if (now > t->now) t->now = now;
    c->phase = ABORTED;
    c->len = 0;
    run(t, id);
    return CHIMNEY_STATUS_SUCCESS;
}

static size_t receive_space(void *tp, uint32_t id) {
    struct target *t = tp;
    struct conn *c = conn_of(t, id);
    return c ? RING_BYTES - c->len : 0;
}

static void handle_timeout(void *tp, uint64_t now) {
    struct target *t = tp;
    if (now > t->now) t->now = now;
#if defined(FAULT_COMPLETE_AFTER_TERMINATE) || defined(MISUSE)
    if (t->late) {
        ChimneyNetBufferList *n = t->late;
        t->late = NULL;
        t->host->receive_complete(t->host->ctx, t->late_conn, n);
    }
#endif
    for (uint32_t id = 0; id < MAX_CONNS; id++) {
        struct conn *c = &t->conns[id];
        if (!c->used) continue;
        if (c->push_deadline != CHIMNEY_NO_DEADLINE && c->push_deadline <= now && head_partial_push(c)) {
            complete(t, id, take_head(c, CHIMNEY_STATUS_SUCCESS));
            c->kick = 1;
        }
        if (c->kick || c->len) {
            c->kick = 0;
            run(t, id);
        }
    }
}

static uint64_t poll_timeout(void *tp) {
    struct target *t = tp;
    uint64_t d = CHIMNEY_NO_DEADLINE;
    for (uint32_t id = 0; id < MAX_CONNS; id++) {
        struct conn *c = &t->conns[id];
        if (!c->used) continue;
        if (c->kick) return t->now;
        if (c->push_deadline < d) d = c->push_deadline;
    }
    return d;
}

static uint64_t push_timer(void *tp, uint32_t id) {
    struct target *t = tp;
    struct conn *c = conn_of(t, id);
    return c ? c->push_deadline : CHIMNEY_NO_DEADLINE;
}

static uint32_t tcp_event(void *tp, uint64_t now, uint32_t id, uint32_t ev, uint32_t specific) {
    struct target *t = tp;
    struct conn *c = conn_of(t, id);
    if (!c) return CHIMNEY_STATUS_INVALID_STATE;
    if (now > t->now) t->now = now;
    if (ev == CHIMNEY_EVENT_RETRIEVE) {
        /* Mandatory reasons: urgent data 5, timeout 8, invalid state 9, upload requested 10,
         * hardware failure 11. */
        int mandatory = specific == 5 || (specific >= 8 && specific <= 11);
        if (mandatory && !c->upload) {
            c->upload = 1;
            c->upload_at = c->posts;
        }
        if (specific == 5) c->urgent = 1;
    }
    c->busy = 1;
    t->host->event_indicate(t->host->ctx, id, ev, specific);
    c->busy = 0;
    run(t, id); /* posts made inside the event */
    return CHIMNEY_STATUS_SUCCESS;
}

static const ChimneyTargetOps OPS = {
    .abi_version = CHIMNEY_ABI_VERSION,
    .name = "c-target",
    .create = create,
    .destroy = destroy,
    .initiate_offload = initiate_offload,
    .receive = receive,
    .receive_return = receive_return,
    .terminate_offload = terminate_offload,
    .receive_data = receive_data,
    .receive_fin = receive_fin,
    .receive_rst = receive_rst,
    .abortive_disconnect = abortive_disconnect,
    .receive_space = receive_space,
    .handle_timeout = handle_timeout,
    .poll_timeout = poll_timeout,
    .push_timer = push_timer,
    .tcp_event = tcp_event,
};

const ChimneyTargetOps *chimney_target_ops(void) { return &OPS; }
