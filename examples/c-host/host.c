/*
 * A small C host on chimney's own offload target, through include/chimney.h: it offloads a
 * connection, posts receive buffers, plays the wire (in-sequence data, FIN) and takes the
 * completions and the disconnect indication, exactly as a host stack would.
 *
 *   cargo build --release -p chimney-ffi
 *   cc -Iinclude examples/c-host/host.c -Ltarget/release -lchimney_ffi -Wl,-rpath,$PWD/target/release -o c-host
 *   ./c-host
 *
 * Built with -DCHIMNEY_HOST_NO_MAIN it is a library whose run_host(ops) the tests call with
 * chimney's table.
 */
#include <stdio.h>
#include <string.h>

#include "chimney.h"

#define CONN 1
#define BUF 8

/* One posted request: the NBL, its NET_BUFFER, one MDL and the buffer, in the host's memory. */
struct request {
    ChimneyNetBufferList nbl;
    ChimneyNetBuffer nb;
    ChimneyMdl mdl;
    uint8_t buf[BUF];
};

struct app {
    const ChimneyTargetOps *ops;
    void *target;
    uint64_t now;
    struct request req[3];
    char got[64];
    size_t n;
    int completions, disconnected, invalid_state, reposted;
};

static ChimneyNetBufferList *prepare(struct request *r) {
    memset(r, 0, sizeof(*r));
    r->mdl.mapped_system_va = r->buf;
    r->mdl.byte_count = BUF;
    r->nb.mdl_chain = &r->mdl;
    r->nb.current_mdl = &r->mdl;
    r->nb.data_length = BUF;
    r->nbl.first_net_buffer = &r->nb;
    return &r->nbl;
}

/* NdisTcpOffloadReceiveComplete: requests come back FIFO with their byte counts. */
static void on_complete(void *ctx, uint32_t conn, ChimneyNetBufferList *nbls) {
    struct app *a = ctx;
    (void)conn;
    for (ChimneyNetBufferList *n = nbls; n; n = n->next) {
        size_t k = n->info[CHIMNEY_INFO_BYTES_TRANSFERRED];
        a->completions++;
        if (n->status == CHIMNEY_STATUS_INVALID_STATE) a->invalid_state++;
        /* The data start advanced by k: the bytes are just before it. */
        const uint8_t *at = n->first_net_buffer->mdl_chain->mapped_system_va + n->first_net_buffer->data_offset - k;
        if (a->n + k < sizeof(a->got)) {
            memcpy(a->got + a->n, at, k);
            a->n += k;
        }
        printf("c-host: completed %zu byte(s), status 0x%08x\n", k, (unsigned)n->status);
    }
    /* Re-post from inside the completion, as a host does: chimney queues it and serves it
     * after this upcall returns. */
    if (!a->reposted) {
        a->reposted = 1;
        a->ops->receive(a->target, a->now, CONN, prepare(&a->req[1]));
    }
}

/* NdisTcpOffloadReceiveHandler: this host always posts first, so it refuses indications. */
static uint32_t on_indicate(void *ctx, uint32_t conn, ChimneyNetBufferList *nbl, uint32_t status, uint32_t *consumed) {
    (void)ctx, (void)conn, (void)nbl, (void)status;
    *consumed = 0;
    return CHIMNEY_STATUS_DATA_NOT_ACCEPTED;
}

/* NdisTcpOffloadEventHandler. */
static void on_event(void *ctx, uint32_t conn, uint32_t event, uint32_t specific) {
    struct app *a = ctx;
    (void)conn, (void)specific;
    if (event == CHIMNEY_EVENT_DISCONNECT) {
        a->disconnected = 1;
        printf("c-host: TcpIndicateDisconnect\n");
    }
}

/* Runs the host against `ops`; 0 when everything arrived as sent. */
int run_host(const ChimneyTargetOps *ops) {
    static struct app a;
    memset(&a, 0, sizeof(a));
    a.ops = ops;
    ChimneyHostOps host = {
        .abi_version = CHIMNEY_ABI_VERSION,
        .ctx = &a,
        .receive_complete = on_complete,
        .receive_indicate = on_indicate,
        .event_indicate = on_event,
    };
    if (ops->abi_version != CHIMNEY_ABI_VERSION) return 2;
    a.target = ops->create(&host, 500);
    if (!a.target) return 2;
    ChimneyOffloadState st = {.local_port = 5001, .remote_port = 40000, .initial_rcv_wnd = 65536,
                              .state = CHIMNEY_TCP_ESTABLISHED, .rcv_nxt = 1000};
    if (ops->initiate_offload(a.target, a.now, CONN, &st) != CHIMNEY_STATUS_SUCCESS) return 2;
    if (ops->receive(a.target, a.now, CONN, prepare(&a.req[0])) != CHIMNEY_STATUS_PENDING) return 1;

    const char *msg = "hello, chimney!";
    a.now += 1000000;
    ops->receive_data(a.target, a.now, CONN, (const uint8_t *)msg, strlen(msg), true);
    a.now += 1000000;
    ops->receive_fin(a.target, a.now, CONN);
    /* A post after the disconnect indication completes INVALID_STATE. */
    ops->receive(a.target, a.now, CONN, prepare(&a.req[2]));

    ChimneyDelegatedState out;
    ops->terminate_offload(a.target, a.now, CONN, &out);
    ops->destroy(a.target);

    a.got[a.n] = 0;
    printf("c-host: received \"%s\" in %d completion(s); rcv_nxt %u, state %u\n", a.got, a.completions,
           (unsigned)out.rcv_nxt, (unsigned)out.state);
    int ok = a.n == strlen(msg) && memcmp(a.got, msg, a.n) == 0 && a.disconnected && a.invalid_state == 1 &&
             out.rcv_nxt == 1000 + strlen(msg) + 1 && out.buffered_data == NULL;
    return ok ? 0 : 1;
}

#ifndef CHIMNEY_HOST_NO_MAIN
int main(void) { return run_host(chimney_target_ops()); }
#endif
