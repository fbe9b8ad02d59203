/* Unit tests of rigd's lease table: exclusive and shared grants, releases, the FIFO of waiters
 * with its reservation rules, GPUs that come and go; then a randomized model check that runs
 * thousands of operations and checks the table's invariants after every one. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lease.h"
#include "util.h"

/* every cmocka test takes a state it rarely needs (CMake builds with -Wno-unused-parameter) */
#pragma GCC diagnostic ignored "-Wunused-parameter"

#define GIB (1024ull * 1024 * 1024)

static const char *const PCI[] = {
        "0000:01:00.0", "0000:02:00.0", "0000:03:00.0", "0000:04:00.0",
        "0000:05:00.0", "0000:06:00.0", "0000:07:00.0", "0000:08:00.0",
};
#define N_PCI (sizeof(PCI) / sizeof(PCI[0]))

static int owner_a, owner_b, owner_c, owner_d;   /* stand-ins for connections: only their addresses matter */

/* ---- helpers ---- */

static struct lease_gpu gpu(const char *pci, uint64_t total_bytes, uint64_t free_bytes)
{
        struct lease_gpu g;
        memset(&g, 0, sizeof(g));
        snprintf(g.pci, sizeof(g.pci), "%s", pci);
        g.vram_total_bytes = total_bytes;
        g.vram_free_bytes = free_bytes;
        return g;
}

/* A table of n GPUs PCI[0..n), each with 16 GiB, all free. */
static void table_with_gpus(struct lease_table *t, size_t n)
{
        struct lease_gpu gpus[N_PCI];
        for (size_t i = 0; i < n; i++)
                gpus[i] = gpu(PCI[i], 16 * GIB, 16 * GIB);
        lease_table_init(t);
        assert_int_equal(lease_table_set_gpus(t, gpus, n, NULL, NULL), 0);
}

static struct lease_request count_req(size_t count, bool is_exclusive, const void *owner)
{
        struct lease_request r;
        memset(&r, 0, sizeof(r));
        r.count = count;
        r.is_exclusive = is_exclusive;
        r.owner = owner;
        snprintf(r.holder, sizeof(r.holder), "test");
        return r;
}

/* A request for exactly the GPUs PCI[idx[0]], PCI[idx[1]], ... */
static struct lease_request named_req(const void *owner, bool is_exclusive, size_t n, const int *idx)
{
        struct lease_request r = count_req(n, is_exclusive, owner);
        for (size_t i = 0; i < n; i++)
                snprintf(r.named[i], sizeof(r.named[i]), "%s", PCI[idx[i]]);
        r.n_named = n;
        return r;
}

struct grant_rec {
        void *cookie;
        char id[PROTO_LEASE_ID_LEN];
        size_t count;
        char pci[8][GPU_PCI_LEN];
};

struct grants {
        size_t n;
        struct grant_rec r[32];
};

static void on_granted(void *cookie, const struct lease *l, void *userdata)
{
        struct grants *g = userdata;
        assert_true(g->n < 32);
        struct grant_rec *rec = &g->r[g->n++];
        rec->cookie = cookie;
        snprintf(rec->id, sizeof(rec->id), "%s", l->id);
        rec->count = l->req.count;
        for (size_t i = 0; i < l->req.count && i < 8; i++)
                snprintf(rec->pci[i], sizeof(rec->pci[i]), "%s", l->pci[i]);
}

/* Runs schedule and returns how many it granted, recorded in *g (emptied first). */
static size_t schedule(struct lease_table *t, struct grants *g)
{
        memset(g, 0, sizeof(*g));
        assert_int_equal(lease_table_schedule(t, 1000, on_granted, g), 0);
        return g->n;
}

/* Enqueues and schedules req; returns the id of its lease, or NULL when it has to wait (the
 * waiter then stays queued and *w is set). The id is in static storage of the slot given. */
static const char *try_lease(struct lease_table *t, const struct lease_request *req, struct lease_waiter **w)
{
        static char ids[16][PROTO_LEASE_ID_LEN];
        static size_t next_slot;
        static int cookies[256];
        static size_t next_cookie;
        int *cookie = &cookies[next_cookie++ % 256];
        struct grants g;
        struct lease_waiter *waiter = lease_table_enqueue(t, req, cookie);
        assert_non_null(waiter);
        schedule(t, &g);
        for (size_t i = 0; i < g.n; i++)
                if (g.r[i].cookie == cookie) {
                        char *id = ids[next_slot++ % 16];
                        snprintf(id, PROTO_LEASE_ID_LEN, "%s", g.r[i].id);
                        if (w)
                                *w = NULL;
                        return id;
                }
        if (w)
                *w = waiter;
        return NULL;
}

static const struct lease *find_lease(const struct lease_table *t, const char *id)
{
        for (const struct lease *l = t->leases; l; l = l->next)
                if (streq(l->id, id))
                        return l;
        return NULL;
}

static const struct lease *holder_of(const struct lease_table *t, int i)
{
        const struct lease_gpu *g = lease_table_find_gpu(t, PCI[i]);
        assert_non_null(g);
        return g->exclusive;
}

static size_t shared_on(const struct lease_table *t, int i)
{
        const struct lease_gpu *g = lease_table_find_gpu(t, PCI[i]);
        assert_non_null(g);
        return g->n_shared;
}

static bool grant_uses(const struct grant_rec *r, int i)
{
        for (size_t k = 0; k < r->count && k < 8; k++)
                if (streq(r->pci[k], PCI[i]))
                        return true;
        return false;
}

struct revocations {
        size_t n;
        char id[32][PROTO_LEASE_ID_LEN];
        char pci[32][GPU_PCI_LEN];
};

static void on_revoked(const struct lease *l, const char *gone_pci, void *userdata)
{
        struct revocations *rv = userdata;
        assert_true(rv->n < 32);
        snprintf(rv->id[rv->n], sizeof(rv->id[0]), "%s", l->id);
        snprintf(rv->pci[rv->n], sizeof(rv->pci[0]), "%s", gone_pci);
        rv->n++;
}

static size_t revoked_times(const struct revocations *rv, const char *id)
{
        size_t n = 0;
        for (size_t i = 0; i < rv->n; i++)
                n += streq(rv->id[i], id);
        return n;
}

/* ---- exclusive and shared ---- */

static void test_exclusive_grant_makes_a_second_grant_of_the_gpu_impossible(void **state)
{
        struct lease_table t;
        table_with_gpus(&t, 1);
        struct lease_request a = count_req(1, true, &owner_a);
        const char *id = try_lease(&t, &a, NULL);
        assert_non_null(id);
        const struct lease *l = find_lease(&t, id);
        assert_non_null(l);
        assert_ptr_equal(holder_of(&t, 0), l);
        assert_string_equal(l->pci[0], PCI[0]);
        assert_int_equal(l->since_usec, 1000);

        int idx0[] = { 0 };
        struct lease_request by_name = named_req(&owner_b, true, 1, idx0);
        struct lease_request by_count = count_req(1, true, &owner_b);
        struct lease_request shared = named_req(&owner_b, false, 1, idx0);
        struct lease_waiter *w1, *w2, *w3;
        assert_null(try_lease(&t, &by_name, &w1));
        assert_null(try_lease(&t, &by_count, &w2));
        assert_null(try_lease(&t, &shared, &w3));
        assert_int_equal(lease_table_count(&t), 1);
        assert_ptr_equal(holder_of(&t, 0), l);
        assert_int_equal(shared_on(&t, 0), 0);
        lease_table_cancel(&t, w1);
        lease_table_cancel(&t, w2);
        lease_table_cancel(&t, w3);
        assert_null(t.waiters);
        lease_table_free(&t);
}

static void test_shared_leases_share_a_gpu_but_block_exclusive(void **state)
{
        struct lease_table t;
        table_with_gpus(&t, 1);
        struct lease_request s1 = count_req(1, false, &owner_a);
        struct lease_request s2 = count_req(1, false, &owner_b);
        char id1[PROTO_LEASE_ID_LEN], id2[PROTO_LEASE_ID_LEN];
        snprintf(id1, sizeof(id1), "%s", try_lease(&t, &s1, NULL));
        snprintf(id2, sizeof(id2), "%s", try_lease(&t, &s2, NULL));
        assert_string_not_equal(id1, id2);
        assert_int_equal(shared_on(&t, 0), 2);
        assert_null(holder_of(&t, 0));

        struct lease_request ex = count_req(1, true, &owner_c);
        struct lease_waiter *w;
        assert_null(try_lease(&t, &ex, &w));
        assert_non_null(w);

        struct grants g;
        assert_int_equal(lease_table_release(&t, id1, &owner_a), 0);
        assert_int_equal(shared_on(&t, 0), 1);
        assert_int_equal(schedule(&t, &g), 0);          /* one shared holder is still there */
        assert_int_equal(lease_table_release(&t, id2, &owner_b), 0);
        assert_int_equal(shared_on(&t, 0), 0);
        assert_int_equal(schedule(&t, &g), 1);
        assert_ptr_equal(holder_of(&t, 0), find_lease(&t, g.r[0].id));
        lease_table_free(&t);
}

static void test_release_frees_the_gpu_and_lets_a_waiter_in(void **state)
{
        struct lease_table t;
        table_with_gpus(&t, 1);
        struct lease_request a = count_req(1, true, &owner_a);
        char id[PROTO_LEASE_ID_LEN];
        snprintf(id, sizeof(id), "%s", try_lease(&t, &a, NULL));
        struct lease_request b = count_req(1, true, &owner_b);
        struct lease_waiter *w;
        assert_null(try_lease(&t, &b, &w));

        assert_int_equal(lease_table_release(&t, id, &owner_a), 0);
        assert_null(holder_of(&t, 0));
        assert_null(find_lease(&t, id));
        assert_int_equal(lease_table_count(&t), 0);

        struct grants g;
        assert_int_equal(schedule(&t, &g), 1);
        assert_string_not_equal(g.r[0].id, id);         /* ids are never reused */
        const struct lease *l = find_lease(&t, g.r[0].id);
        assert_ptr_equal(l->req.owner, &owner_b);
        assert_ptr_equal(holder_of(&t, 0), l);
        assert_null(t.waiters);
        lease_table_free(&t);
}

/* ---- the queue ---- */

static void test_waiters_are_granted_in_arrival_order(void **state)
{
        struct lease_table t;
        table_with_gpus(&t, 1);
        struct lease_request first = count_req(1, true, &owner_a);
        char held[PROTO_LEASE_ID_LEN];
        snprintf(held, sizeof(held), "%s", try_lease(&t, &first, NULL));

        int cookies[3];
        const void *owners[3] = { &owner_a, &owner_b, &owner_c };
        for (int i = 0; i < 3; i++) {
                struct lease_request r = count_req(1, true, owners[i]);
                assert_non_null(lease_table_enqueue(&t, &r, &cookies[i]));
        }
        struct grants g;
        assert_int_equal(schedule(&t, &g), 0);
        for (int i = 0; i < 3; i++) {
                assert_int_equal(lease_table_release(&t, held, i == 0 ? &owner_a : owners[i - 1]), 0);
                assert_int_equal(schedule(&t, &g), 1);
                assert_ptr_equal(g.r[0].cookie, &cookies[i]);
                snprintf(held, sizeof(held), "%s", g.r[0].id);
        }
        assert_null(t.waiters);

        /* three GPUs freed at once: still granted oldest first */
        struct lease_table t3;
        table_with_gpus(&t3, 3);
        struct lease_request all = count_req(3, true, &owner_a);
        snprintf(held, sizeof(held), "%s", try_lease(&t3, &all, NULL));
        for (int i = 0; i < 3; i++) {
                struct lease_request r = count_req(1, true, owners[i]);
                assert_non_null(lease_table_enqueue(&t3, &r, &cookies[i]));
        }
        assert_int_equal(lease_table_release(&t3, held, &owner_a), 0);
        assert_int_equal(schedule(&t3, &g), 3);
        for (int i = 0; i < 3; i++) {
                assert_ptr_equal(g.r[i].cookie, &cookies[i]);
                assert_string_equal(g.r[i].pci[0], PCI[i]);
        }
        lease_table_free(&t);
        lease_table_free(&t3);
}

static void test_count_two_waiter_is_not_starved_by_later_count_one_requests(void **state)
{
        struct lease_table t;
        table_with_gpus(&t, 2);
        int idx0[] = { 0 }, idx1[] = { 1 };
        struct lease_request h0 = named_req(&owner_a, true, 1, idx0);
        struct lease_request h1 = named_req(&owner_a, true, 1, idx1);
        char id0[PROTO_LEASE_ID_LEN], id1[PROTO_LEASE_ID_LEN];
        snprintf(id0, sizeof(id0), "%s", try_lease(&t, &h0, NULL));
        snprintf(id1, sizeof(id1), "%s", try_lease(&t, &h1, NULL));

        int big_cookie, small_cookie[3];
        struct lease_request big = count_req(2, true, &owner_b);
        assert_non_null(lease_table_enqueue(&t, &big, &big_cookie));
        struct grants g;
        assert_int_equal(schedule(&t, &g), 0);

        /* one GPU comes free: the later count-1 requests must not take it */
        assert_int_equal(lease_table_release(&t, id0, &owner_a), 0);
        for (int i = 0; i < 3; i++) {
                struct lease_request small = count_req(1, true, &owner_c);
                assert_non_null(lease_table_enqueue(&t, &small, &small_cookie[i]));
                assert_int_equal(schedule(&t, &g), 0);
        }
        assert_null(holder_of(&t, 0));

        assert_int_equal(lease_table_release(&t, id1, &owner_a), 0);
        assert_int_equal(schedule(&t, &g), 1);
        assert_ptr_equal(g.r[0].cookie, &big_cookie);
        const struct lease *l = find_lease(&t, g.r[0].id);
        assert_int_equal(l->req.count, 2);
        assert_ptr_equal(holder_of(&t, 0), l);
        assert_ptr_equal(holder_of(&t, 1), l);

        /* and when it is done, the small ones go in order */
        assert_int_equal(lease_table_release(&t, g.r[0].id, &owner_b), 0);
        assert_int_equal(schedule(&t, &g), 2);
        assert_ptr_equal(g.r[0].cookie, &small_cookie[0]);
        assert_ptr_equal(g.r[1].cookie, &small_cookie[1]);
        lease_table_free(&t);
}

/* Reservations alone would not do: a GPU with a shared holder is not free for an exclusive
 * waiter, so it reserves nothing there, and later shared requests could keep it busy forever. */
static void test_later_shared_request_does_not_join_a_gpu_an_exclusive_waiter_needs(void **state)
{
        struct lease_table t;
        table_with_gpus(&t, 2);
        int idx0[] = { 0 }, idx1[] = { 1 };
        struct lease_request ex0 = named_req(&owner_a, true, 1, idx0);
        struct lease_request sh1 = named_req(&owner_a, false, 1, idx1);
        char ex_id[PROTO_LEASE_ID_LEN], sh_id[PROTO_LEASE_ID_LEN];
        snprintf(ex_id, sizeof(ex_id), "%s", try_lease(&t, &ex0, NULL));
        snprintf(sh_id, sizeof(sh_id), "%s", try_lease(&t, &sh1, NULL));

        int big_cookie;
        struct lease_request big = count_req(2, true, &owner_b);
        assert_non_null(lease_table_enqueue(&t, &big, &big_cookie));
        struct lease_request join = count_req(1, false, &owner_c);
        struct lease_waiter *w;
        assert_null(try_lease(&t, &join, &w));
        assert_int_equal(shared_on(&t, 1), 1);

        assert_int_equal(lease_table_release(&t, sh_id, &owner_a), 0);
        assert_int_equal(lease_table_release(&t, ex_id, &owner_a), 0);
        struct grants g;
        assert_int_equal(schedule(&t, &g), 1);
        assert_ptr_equal(g.r[0].cookie, &big_cookie);
        assert_ptr_equal(t.waiters, w);
        lease_table_free(&t);
}

static void test_cancelled_count_waiter_no_longer_holds_back_later_ones(void **state)
{
        struct lease_table t;
        table_with_gpus(&t, 2);
        int idx0[] = { 0 };
        struct lease_request h0 = named_req(&owner_a, true, 1, idx0);
        assert_non_null(try_lease(&t, &h0, NULL));
        struct lease_request big = count_req(2, true, &owner_b);
        struct lease_waiter *w;
        assert_null(try_lease(&t, &big, &w));
        struct lease_request small = count_req(1, true, &owner_c);
        struct lease_waiter *ws;
        assert_null(try_lease(&t, &small, &ws));

        lease_table_cancel(&t, w);
        struct grants g;
        assert_int_equal(schedule(&t, &g), 1);
        assert_string_equal(g.r[0].pci[0], PCI[1]);
        assert_null(t.waiters);
        lease_table_free(&t);
}

static void test_named_waiter_reserves_its_gpus_but_others_go_ahead(void **state)
{
        struct lease_table t;
        table_with_gpus(&t, 3);
        int idx0[] = { 0 }, idx01[] = { 0, 1 }, idx1[] = { 1 }, idx2[] = { 2 };
        struct lease_request hold0 = named_req(&owner_a, true, 1, idx0);
        char held[PROTO_LEASE_ID_LEN];
        snprintf(held, sizeof(held), "%s", try_lease(&t, &hold0, NULL));

        /* wants GPUs 0 and 1; 0 is taken, so it waits and keeps 1 from later requests */
        int named_cookie;
        struct lease_request both = named_req(&owner_b, true, 2, idx01);
        assert_non_null(lease_table_enqueue(&t, &both, &named_cookie));
        struct grants g;
        assert_int_equal(schedule(&t, &g), 0);

        /* a later count request goes ahead, on GPU 2 rather than the reserved GPU 1 */
        struct lease_request one = count_req(1, true, &owner_c);
        const char *id = try_lease(&t, &one, NULL);
        assert_non_null(id);
        assert_string_equal(find_lease(&t, id)->pci[0], PCI[2]);
        assert_null(holder_of(&t, 1));

        /* a later request naming GPU 1 (exclusive or shared) waits behind the reservation */
        struct lease_request want1 = named_req(&owner_c, true, 1, idx1);
        struct lease_request share1 = named_req(&owner_c, false, 1, idx1);
        struct lease_waiter *w1, *w2;
        assert_null(try_lease(&t, &want1, &w1));
        assert_null(try_lease(&t, &share1, &w2));
        assert_int_equal(shared_on(&t, 1), 0);
        lease_table_cancel(&t, w1);
        lease_table_cancel(&t, w2);

        /* GPU 2 is busy now; the named waiter for it waits too, not on account of the reservation */
        struct lease_request want2 = named_req(&owner_c, true, 1, idx2);
        assert_null(try_lease(&t, &want2, &w1));
        lease_table_cancel(&t, w1);

        assert_int_equal(lease_table_release(&t, held, &owner_a), 0);
        assert_int_equal(schedule(&t, &g), 1);
        assert_ptr_equal(g.r[0].cookie, &named_cookie);
        assert_true(grant_uses(&g.r[0], 0) && grant_uses(&g.r[0], 1));
        lease_table_free(&t);
}

static void test_named_waiter_does_not_hold_back_requests_for_other_gpus(void **state)
{
        struct lease_table t;
        table_with_gpus(&t, 3);
        int idx0[] = { 0 }, idx2[] = { 2 };
        struct lease_request hold0 = named_req(&owner_a, true, 1, idx0);
        assert_non_null(try_lease(&t, &hold0, NULL));
        struct lease_request wait0 = named_req(&owner_b, true, 1, idx0);
        struct lease_waiter *w;
        assert_null(try_lease(&t, &wait0, &w));

        struct lease_request two = count_req(2, true, &owner_c);
        const char *id = try_lease(&t, &two, NULL);
        assert_non_null(id);
        const struct lease *l = find_lease(&t, id);
        assert_string_equal(l->pci[0], PCI[1]);
        assert_string_equal(l->pci[1], PCI[2]);
        assert_non_null(t.waiters);
        assert_ptr_equal(t.waiters, w);

        /* behind a waiting count request, a named request waits for the GPUs that one reserved
         * and goes ahead on a GPU it cannot use */
        lease_table_free(&t);
        lease_table_init(&t);
        struct lease_gpu gpus[] = { gpu(PCI[0], 24 * GIB, 24 * GIB), gpu(PCI[1], 24 * GIB, 24 * GIB),
                                    gpu(PCI[2], 8 * GIB, 8 * GIB) };
        assert_int_equal(lease_table_set_gpus(&t, gpus, 3, NULL, NULL), 0);
        assert_non_null(try_lease(&t, &hold0, NULL));
        struct lease_request big = count_req(2, true, &owner_b);
        big.min_vram_bytes = 16 * GIB;
        assert_null(try_lease(&t, &big, &w));
        int idx1[] = { 1 };
        struct lease_request want1 = named_req(&owner_c, true, 1, idx1);
        assert_null(try_lease(&t, &want1, NULL));      /* GPU 1 is free, but reserved */
        struct lease_request want2 = named_req(&owner_c, true, 1, idx2);
        id = try_lease(&t, &want2, NULL);              /* GPU 2 is too small for the waiter */
        assert_non_null(id);
        assert_string_equal(find_lease(&t, id)->pci[0], PCI[2]);
        lease_table_free(&t);
}

/* ---- VRAM and impossible requests ---- */

static void test_min_vram_filters_gpus(void **state)
{
        struct lease_table t;
        lease_table_init(&t);
        struct lease_gpu gpus[] = {
                gpu(PCI[0], 16 * GIB, 8 * GIB),         /* big, but half of it is in use */
                gpu(PCI[1], 24 * GIB, 24 * GIB),
                gpu(PCI[2], 8 * GIB, 8 * GIB),
                gpu(PCI[3], 48 * GIB, 40 * GIB),
        };
        assert_int_equal(lease_table_set_gpus(&t, gpus, 4, NULL, NULL), 0);

        struct lease_request r = count_req(1, true, &owner_a);
        r.min_vram_bytes = 16 * GIB;
        const char *id = try_lease(&t, &r, NULL);
        assert_non_null(id);
        assert_string_equal(find_lease(&t, id)->pci[0], PCI[1]);

        r.min_vram_bytes = 20 * GIB;
        id = try_lease(&t, &r, NULL);
        assert_non_null(id);
        assert_string_equal(find_lease(&t, id)->pci[0], PCI[3]);

        /* GPUs 0 and 2 are free but too small: the request waits */
        struct lease_waiter *w;
        r.min_vram_bytes = 9 * GIB;
        assert_null(try_lease(&t, &r, &w));
        lease_table_cancel(&t, w);
        assert_null(holder_of(&t, 0));
        assert_null(holder_of(&t, 2));

        /* without a minimum any GPU does */
        r.min_vram_bytes = 0;
        id = try_lease(&t, &r, NULL);
        assert_non_null(id);
        assert_string_equal(find_lease(&t, id)->pci[0], PCI[0]);

        /* a named GPU with too little free VRAM is not granted */
        int idx2[] = { 2 };
        struct lease_request named = named_req(&owner_a, true, 1, idx2);
        named.min_vram_bytes = 8 * GIB + 1;
        assert_null(try_lease(&t, &named, &w));
        lease_table_cancel(&t, w);
        named.min_vram_bytes = 8 * GIB;
        assert_non_null(try_lease(&t, &named, NULL));
        lease_table_free(&t);
}

static void test_check_refuses_impossible_requests_with_enodev(void **state)
{
        struct lease_table t;
        lease_table_init(&t);
        struct lease_gpu gpus[] = { gpu(PCI[0], 16 * GIB, 16 * GIB), gpu(PCI[1], 48 * GIB, 1 * GIB) };
        assert_int_equal(lease_table_set_gpus(&t, gpus, 2, NULL, NULL), 0);
        char why[256];

        int idx5[] = { 5 };
        struct lease_request r = named_req(&owner_a, true, 1, idx5);
        why[0] = '\0';
        assert_int_equal(lease_table_check(&t, &r, why, sizeof(why)), -ENODEV);
        assert_non_null(strstr(why, PCI[5]));

        r = count_req(3, true, &owner_a);
        why[0] = '\0';
        assert_int_equal(lease_table_check(&t, &r, why, sizeof(why)), -ENODEV);
        assert_non_null(strstr(why, "3 GPU(s)"));

        r = count_req(2, true, &owner_a);
        r.min_vram_bytes = 32 * GIB;            /* only one GPU has that much at all */
        why[0] = '\0';
        assert_int_equal(lease_table_check(&t, &r, why, sizeof(why)), -ENODEV);
        assert_non_null(strstr(why, "has 1"));

        int idx0[] = { 0 };
        r = named_req(&owner_a, true, 1, idx0);
        r.min_vram_bytes = 17 * GIB;
        why[0] = '\0';
        assert_int_equal(lease_table_check(&t, &r, why, sizeof(why)), -ENODEV);
        assert_non_null(strstr(why, PCI[0]));

        /* possible, if not now: GPU 1 has 48 GiB but only 1 GiB free; both GPUs are taken */
        r = count_req(1, true, &owner_a);
        r.min_vram_bytes = 32 * GIB;
        assert_int_equal(lease_table_check(&t, &r, why, sizeof(why)), 0);
        struct lease_request all = count_req(2, true, &owner_b);
        assert_non_null(try_lease(&t, &all, NULL));
        r = count_req(2, true, &owner_a);
        assert_int_equal(lease_table_check(&t, &r, why, sizeof(why)), 0);

        /* an empty table can grant nothing */
        struct lease_table empty;
        lease_table_init(&empty);
        r = count_req(1, true, &owner_a);
        assert_int_equal(lease_table_check(&empty, &r, why, sizeof(why)), -ENODEV);
        lease_table_free(&empty);
        lease_table_free(&t);
}

static void test_schedule_on_a_table_without_gpus_grants_nothing(void **state)
{
        struct lease_table t;
        lease_table_init(&t);           /* no set_gpus yet: discovery has not run */
        struct lease_request r = count_req(1, true, &owner_a);
        int idx0[] = { 0 };
        struct lease_request n = named_req(&owner_a, true, 1, idx0);
        assert_non_null(lease_table_enqueue(&t, &r, NULL));
        assert_non_null(lease_table_enqueue(&t, &n, NULL));
        struct grants g;
        assert_int_equal(schedule(&t, &g), 0);
        assert_int_equal(lease_table_count(&t), 0);
        assert_null(lease_table_find_gpu(&t, PCI[0]));
        lease_table_free(&t);
}

/* ---- releasing ---- */

static void test_release_by_another_owner_is_eperm_and_unknown_id_enoent(void **state)
{
        struct lease_table t;
        table_with_gpus(&t, 1);
        struct lease_request a = count_req(1, true, &owner_a);
        char id[PROTO_LEASE_ID_LEN];
        snprintf(id, sizeof(id), "%s", try_lease(&t, &a, NULL));

        assert_int_equal(lease_table_release(&t, id, &owner_b), -EPERM);
        assert_int_equal(lease_table_release(&t, id, NULL), -EPERM);
        assert_non_null(find_lease(&t, id));
        assert_non_null(holder_of(&t, 0));

        assert_int_equal(lease_table_release(&t, "lease-999", &owner_a), -ENOENT);
        assert_int_equal(lease_table_release(&t, "", &owner_a), -ENOENT);
        assert_int_equal(lease_table_count(&t), 1);

        assert_int_equal(lease_table_release(&t, id, &owner_a), 0);
        assert_int_equal(lease_table_release(&t, id, &owner_a), -ENOENT);      /* only once */
        lease_table_free(&t);
}

static void test_release_owner_ends_all_of_one_owners_leases_only(void **state)
{
        struct lease_table t;
        table_with_gpus(&t, 4);
        struct lease_request a1 = count_req(1, true, &owner_a);
        struct lease_request b1 = count_req(1, true, &owner_b);
        struct lease_request a2 = count_req(1, false, &owner_a);
        struct lease_request c1 = count_req(1, false, &owner_c);
        assert_non_null(try_lease(&t, &a1, NULL));      /* GPU 0 */
        char b_id[PROTO_LEASE_ID_LEN];
        snprintf(b_id, sizeof(b_id), "%s", try_lease(&t, &b1, NULL));   /* GPU 1 */
        assert_non_null(try_lease(&t, &a2, NULL));      /* GPU 2, shared */
        assert_non_null(try_lease(&t, &c1, NULL));      /* GPU 2, shared */
        assert_int_equal(shared_on(&t, 2), 2);

        assert_int_equal(lease_table_release_owner(&t, &owner_a), 2);
        assert_int_equal(lease_table_count(&t), 2);
        for (const struct lease *l = t.leases; l; l = l->next)
                assert_ptr_not_equal(l->req.owner, &owner_a);
        assert_null(holder_of(&t, 0));
        assert_ptr_equal(holder_of(&t, 1), find_lease(&t, b_id));
        assert_int_equal(shared_on(&t, 2), 1);
        assert_int_equal(lease_table_release_owner(&t, &owner_a), 0);
        assert_int_equal(lease_table_release_owner(&t, &owner_c), 1);
        assert_int_equal(shared_on(&t, 2), 0);
        lease_table_free(&t);
}

/* ---- GPUs that come and go ---- */

static void test_removed_gpu_revokes_exactly_the_leases_that_used_it(void **state)
{
        struct lease_table t;
        table_with_gpus(&t, 5);
        int idx01[] = { 0, 1 }, idx2[] = { 2 }, idx3[] = { 3 }, idx34[] = { 3, 4 };
        struct lease_request pair = named_req(&owner_a, true, 2, idx01);
        struct lease_request solo = named_req(&owner_b, true, 1, idx2);
        struct lease_request sh3 = named_req(&owner_c, false, 1, idx3);
        struct lease_request sh34 = named_req(&owner_c, false, 2, idx34);
        char pair_id[PROTO_LEASE_ID_LEN], solo_id[PROTO_LEASE_ID_LEN], sh3_id[PROTO_LEASE_ID_LEN],
                sh34_id[PROTO_LEASE_ID_LEN];
        snprintf(pair_id, sizeof(pair_id), "%s", try_lease(&t, &pair, NULL));
        snprintf(solo_id, sizeof(solo_id), "%s", try_lease(&t, &solo, NULL));
        snprintf(sh3_id, sizeof(sh3_id), "%s", try_lease(&t, &sh3, NULL));
        snprintf(sh34_id, sizeof(sh34_id), "%s", try_lease(&t, &sh34, NULL));
        assert_int_equal(shared_on(&t, 3), 2);

        /* GPU 1 goes away: the pair lease ends as a whole, GPU 0 is free again */
        struct lease_gpu keep[] = { gpu(PCI[0], 16 * GIB, 16 * GIB), gpu(PCI[2], 16 * GIB, 16 * GIB),
                                    gpu(PCI[3], 16 * GIB, 16 * GIB), gpu(PCI[4], 16 * GIB, 16 * GIB) };
        struct revocations rv = { 0 };
        assert_int_equal(lease_table_set_gpus(&t, keep, 4, on_revoked, &rv), 0);
        assert_int_equal(rv.n, 1);
        assert_string_equal(rv.id[0], pair_id);
        assert_string_equal(rv.pci[0], PCI[1]);
        assert_null(find_lease(&t, pair_id));
        assert_null(holder_of(&t, 0));
        assert_null(lease_table_find_gpu(&t, PCI[1]));
        assert_non_null(find_lease(&t, solo_id));
        assert_ptr_equal(holder_of(&t, 2), find_lease(&t, solo_id));
        assert_int_equal(lease_table_count(&t), 3);

        /* GPU 3 goes away: both shared leases on it end, once each; GPU 4 loses its sharer */
        struct lease_gpu keep2[] = { gpu(PCI[0], 16 * GIB, 16 * GIB), gpu(PCI[2], 16 * GIB, 16 * GIB),
                                     gpu(PCI[4], 16 * GIB, 16 * GIB) };
        memset(&rv, 0, sizeof(rv));
        assert_int_equal(lease_table_set_gpus(&t, keep2, 3, on_revoked, &rv), 0);
        assert_int_equal(rv.n, 2);
        assert_int_equal(revoked_times(&rv, sh3_id), 1);
        assert_int_equal(revoked_times(&rv, sh34_id), 1);
        assert_string_equal(rv.pci[0], PCI[3]);
        assert_string_equal(rv.pci[1], PCI[3]);
        assert_int_equal(shared_on(&t, 4), 0);
        assert_int_equal(lease_table_count(&t), 1);

        /* a lease on two GPUs that both go is revoked once */
        int idx04[] = { 0, 4 };
        struct lease_request pair2 = named_req(&owner_a, true, 2, idx04);
        char pair2_id[PROTO_LEASE_ID_LEN];
        snprintf(pair2_id, sizeof(pair2_id), "%s", try_lease(&t, &pair2, NULL));
        memset(&rv, 0, sizeof(rv));
        assert_int_equal(lease_table_set_gpus(&t, keep2 + 1, 1, on_revoked, &rv), 0);
        assert_int_equal(rv.n, 1);
        assert_string_equal(rv.id[0], pair2_id);
        assert_ptr_equal(holder_of(&t, 2), find_lease(&t, solo_id));

        /* without a callback the leases still end */
        assert_int_equal(lease_table_set_gpus(&t, NULL, 0, NULL, NULL), 0);
        assert_int_equal(lease_table_count(&t), 0);
        lease_table_free(&t);
}

static void test_holders_survive_set_gpus_that_keeps_their_gpus(void **state)
{
        struct lease_table t;
        table_with_gpus(&t, 3);
        int idx0[] = { 0 }, idx2[] = { 2 };
        struct lease_request ex = named_req(&owner_a, true, 1, idx0);
        struct lease_request sh = named_req(&owner_b, false, 1, idx2);
        char ex_id[PROTO_LEASE_ID_LEN], sh_id[PROTO_LEASE_ID_LEN];
        snprintf(ex_id, sizeof(ex_id), "%s", try_lease(&t, &ex, NULL));
        snprintf(sh_id, sizeof(sh_id), "%s", try_lease(&t, &sh, NULL));

        /* the same GPUs in another order, with new VRAM figures, and one new GPU */
        struct lease_gpu again[] = { gpu(PCI[3], 16 * GIB, 16 * GIB), gpu(PCI[2], 16 * GIB, 3 * GIB),
                                     gpu(PCI[1], 16 * GIB, 16 * GIB), gpu(PCI[0], 16 * GIB, 2 * GIB) };
        again[1].n_shared = 7;                          /* what the caller passes here is not trusted */
        struct revocations rv = { 0 };
        assert_int_equal(lease_table_set_gpus(&t, again, 4, on_revoked, &rv), 0);
        assert_int_equal(rv.n, 0);
        assert_int_equal(lease_table_count(&t), 2);
        assert_ptr_equal(holder_of(&t, 0), find_lease(&t, ex_id));
        assert_int_equal(shared_on(&t, 2), 1);
        assert_null(holder_of(&t, 1));
        assert_null(holder_of(&t, 3));
        assert_int_equal(lease_table_find_gpu(&t, PCI[0])->vram_free_bytes, 2 * GIB);

        /* the carried-over holders still block, and release still frees the right GPU */
        struct lease_request want0 = named_req(&owner_c, true, 1, idx0);
        struct lease_waiter *w;
        assert_null(try_lease(&t, &want0, &w));
        assert_int_equal(lease_table_release(&t, ex_id, &owner_a), 0);
        assert_null(holder_of(&t, 0));
        struct grants g;
        assert_int_equal(schedule(&t, &g), 1);
        assert_string_equal(g.r[0].pci[0], PCI[0]);
        assert_int_equal(lease_table_release(&t, sh_id, &owner_b), 0);
        assert_int_equal(shared_on(&t, 2), 0);
        lease_table_free(&t);
}

static void test_gpu_that_comes_back_lets_its_named_waiter_in(void **state)
{
        struct lease_table t;
        table_with_gpus(&t, 1);
        int idx1[] = { 1 };
        struct lease_request want1 = named_req(&owner_a, true, 1, idx1);
        struct lease_waiter *w;
        assert_null(try_lease(&t, &want1, &w));

        struct lease_gpu two[] = { gpu(PCI[0], 16 * GIB, 16 * GIB), gpu(PCI[1], 16 * GIB, 16 * GIB) };
        assert_int_equal(lease_table_set_gpus(&t, two, 2, NULL, NULL), 0);
        struct grants g;
        assert_int_equal(schedule(&t, &g), 1);
        assert_string_equal(g.r[0].pci[0], PCI[1]);
        lease_table_free(&t);
}

/* ---- the model check ---- */

/* What the test remembers of each queued request; the waiter's cookie points here. */
struct model_waiter {
        struct lease_waiter *w;
        struct lease_request req;
        uint64_t seq;                   /* arrival order */
};

struct model {
        struct lease_table t;
        struct model_waiter *waiters[64];       /* queued, oldest first */
        size_t n_waiters;
        uint64_t next_seq;
        uint64_t last_granted_seq;              /* within one schedule() call */
        size_t n_granted_now;
        char ids_seen[8192][PROTO_LEASE_ID_LEN];   /* every lease id ever granted */
        size_t n_ids_seen;
        uint64_t rng;
        unsigned seed;
        int step;
};

static const void *const owners[] = { &owner_a, &owner_b, &owner_c, &owner_d };

static uint64_t rnd(struct model *m)
{
        m->rng ^= m->rng << 13;
        m->rng ^= m->rng >> 7;
        m->rng ^= m->rng << 17;
        return m->rng;
}

static size_t rnd_below(struct model *m, size_t n)
{
        return (size_t)(rnd(m) % n);
}

#define model_fail(m, ...)                                                              \
        do {                                                                            \
                char what_[256];                                                        \
                snprintf(what_, sizeof(what_), __VA_ARGS__);                            \
                fail_msg("seed %u step %d: %s", (m)->seed, (m)->step, what_);           \
        } while (0)

static bool lease_lists(const struct lease *l, const char *pci)
{
        for (size_t k = 0; k < l->req.count; k++)
                if (streq(l->pci[k], pci))
                        return true;
        return false;
}

/* Whether g could go to req, as the table would see it without the lease `ignore` (NULL: none). */
static bool is_free_for(const struct lease_gpu *g, const struct lease_request *req, const struct lease *ignore)
{
        bool is_ignored_holder = ignore && lease_lists(ignore, g->pci);
        const struct lease *exclusive = is_ignored_holder && g->exclusive == ignore ? NULL : g->exclusive;
        size_t n_shared = g->n_shared - (is_ignored_holder && !ignore->req.is_exclusive ? 1 : 0);
        if (exclusive)
                return false;
        if (req->is_exclusive && n_shared > 0)
                return false;
        return g->vram_free_bytes >= req->min_vram_bytes;
}

/* Holds at any time: holders are consistent, shared counts match, and every held GPU is there. */
static void check_table(struct model *m)
{
        const struct lease_table *t = &m->t;
        size_t n_leases = 0;
        for (const struct lease *l = t->leases; l; l = l->next) {
                n_leases++;
                if (l->req.count < 1 || l->req.count > PROTO_MAX_GPUS)
                        model_fail(m, "%s has count %zu", l->id, l->req.count);
                for (size_t k = 0; k < l->req.count; k++) {
                        if (!lease_table_find_gpu(t, l->pci[k]))
                                model_fail(m, "%s holds %s, which is gone", l->id, l->pci[k]);
                        for (size_t j = 0; j < k; j++)
                                if (streq(l->pci[j], l->pci[k]))
                                        model_fail(m, "%s lists %s twice", l->id, l->pci[k]);
                }
                for (const struct lease *o = t->leases; o != l; o = o->next)
                        if (streq(o->id, l->id))
                                model_fail(m, "two leases are called %s", l->id);
        }
        if (lease_table_count(t) != n_leases)
                model_fail(m, "lease_table_count says %zu, the list has %zu", lease_table_count(t), n_leases);

        for (size_t i = 0; i < t->n_gpus; i++) {
                const struct lease_gpu *g = &t->gpus[i];
                size_t n_exclusive = 0, n_shared = 0;
                const struct lease *exclusive = NULL;
                for (const struct lease *l = t->leases; l; l = l->next) {
                        if (!lease_lists(l, g->pci))
                                continue;
                        if (l->req.is_exclusive) {
                                n_exclusive++;
                                exclusive = l;
                        } else {
                                n_shared++;
                        }
                }
                if (n_exclusive > 1)
                        model_fail(m, "%s has %zu exclusive holders", g->pci, n_exclusive);
                if (n_exclusive == 1 && n_shared > 0)
                        model_fail(m, "%s has an exclusive holder and %zu shared", g->pci, n_shared);
                if (g->exclusive != exclusive)
                        model_fail(m, "%s: the table says holder %s, the leases say %s", g->pci,
                                   g->exclusive ? g->exclusive->id : "none", exclusive ? exclusive->id : "none");
                if (g->n_shared != n_shared)
                        model_fail(m, "%s: n_shared is %zu, %zu shared leases list it", g->pci, g->n_shared, n_shared);
                for (size_t j = 0; j < i; j++)
                        if (streq(t->gpus[j].pci, g->pci))
                                model_fail(m, "%s is in the table twice", g->pci);
        }

        /* the queue is the model's queue, in arrival order */
        size_t k = 0;
        for (const struct lease_waiter *w = t->waiters; w; w = w->next, k++)
                if (k >= m->n_waiters || m->waiters[k]->w != w)
                        model_fail(m, "queue position %zu is not the model's", k);
        if (k != m->n_waiters)
                model_fail(m, "the queue has %zu waiters, the model %zu", k, m->n_waiters);
}

/* The rules of schedule(): it walks the queue oldest first. A waiter that cannot be granted
 * reserves what it waits for (a named waiter: its GPUs that are present; a count waiter: every GPU
 * free for it and not reserved yet), and a waiting count waiter holds back every later count
 * waiter. A grant only ever takes GPUs, so a GPU a waiter reserved stays as it was for the rest
 * of the pass.
 *
 * walk_queue() replays that for the first n queued waiters against the table as it is, less the
 * lease `ignore`, fills reserved[] (indexed like t->gpus) and *is_count_blocked, and fails when
 * one of them could have been granted at its turn. Two invariants follow from it:
 *  - after schedule(), no queued waiter is grantable at its turn (walk of the whole queue);
 *  - when schedule() grants lease l to the waiter at position k, the waiters before it are the
 *    ones that failed in this pass, and the table without l is what they saw: l must not be a
 *    count request behind a waiting count request, nor use a GPU they reserved. */
static void walk_queue(struct model *m, size_t n, const struct lease *ignore, bool *reserved, bool *is_count_blocked)
{
        const struct lease_table *t = &m->t;
        memset(reserved, 0, t->n_gpus * sizeof(*reserved));
        *is_count_blocked = false;
        for (size_t k = 0; k < n; k++) {
                const struct lease_request *req = &m->waiters[k]->req;
                bool is_named = req->n_named > 0;
                if (!is_named && *is_count_blocked)
                        continue;
                bool usable[N_PCI] = { false };
                size_t n_usable = 0;
                if (is_named) {
                        for (size_t j = 0; j < req->n_named; j++) {
                                const struct lease_gpu *g = lease_table_find_gpu(t, req->named[j]);
                                size_t i = g ? (size_t)(g - t->gpus) : 0;
                                if (g && is_free_for(g, req, ignore) && !reserved[i]) {
                                        usable[i] = true;
                                        n_usable++;
                                }
                        }
                } else {
                        for (size_t i = 0; i < t->n_gpus; i++)
                                if (is_free_for(&t->gpus[i], req, ignore) && !reserved[i]) {
                                        usable[i] = true;
                                        n_usable++;
                                }
                }
                if (n_usable >= req->count)
                        model_fail(m, "waiter #%llu (%s, count %zu, %s) could be granted but waits at queue position %zu",
                                   (unsigned long long)m->waiters[k]->seq, is_named ? "named" : "by count", req->count,
                                   req->is_exclusive ? "exclusive" : "shared", k);
                if (is_named) {
                        for (size_t j = 0; j < req->n_named; j++) {
                                const struct lease_gpu *g = lease_table_find_gpu(t, req->named[j]);
                                if (g)
                                        reserved[g - t->gpus] = true;
                        }
                } else {
                        for (size_t i = 0; i < t->n_gpus; i++)
                                reserved[i] |= usable[i];
                        *is_count_blocked = true;
                }
        }
}

static void check_no_waiter_grantable(struct model *m)
{
        bool reserved[N_PCI];
        bool is_count_blocked;
        walk_queue(m, m->n_waiters, NULL, reserved, &is_count_blocked);
}

static void model_on_granted(void *cookie, const struct lease *l, void *userdata)
{
        struct model *m = userdata;
        struct model_waiter *mw = cookie;
        const struct lease_request *req = &mw->req;
        if (m->n_granted_now > 0 && mw->seq <= m->last_granted_seq)
                model_fail(m, "waiter #%llu granted after #%llu", (unsigned long long)mw->seq,
                           (unsigned long long)m->last_granted_seq);
        m->last_granted_seq = mw->seq;
        m->n_granted_now++;

        size_t pos = 0;
        while (pos < m->n_waiters && m->waiters[pos] != mw)
                pos++;
        if (pos == m->n_waiters)
                model_fail(m, "granted a waiter the model does not have");
        bool reserved[N_PCI];
        bool is_count_blocked;
        walk_queue(m, pos, l, reserved, &is_count_blocked);
        if (req->n_named == 0 && is_count_blocked)
                model_fail(m, "waiter #%llu (count %zu) granted past an older count waiter", (unsigned long long)mw->seq,
                           req->count);
        for (size_t k = 0; k < l->req.count; k++) {
                const struct lease_gpu *g = lease_table_find_gpu(&m->t, l->pci[k]);
                if (g && reserved[g - m->t.gpus])
                        model_fail(m, "waiter #%llu got %s, which an older waiter reserved", (unsigned long long)mw->seq,
                                   l->pci[k]);
        }

        if (l->req.count != req->count || l->req.is_exclusive != req->is_exclusive || l->req.owner != req->owner)
                model_fail(m, "%s is not what waiter #%llu asked for", l->id, (unsigned long long)mw->seq);
        for (size_t k = 0; k < l->req.count; k++) {
                const struct lease_gpu *g = lease_table_find_gpu(&m->t, l->pci[k]);
                if (!g)
                        model_fail(m, "%s got %s, which is not there", l->id, l->pci[k]);
                if (g->vram_free_bytes < req->min_vram_bytes)
                        model_fail(m, "%s got %s with too little free VRAM", l->id, l->pci[k]);
                if (req->n_named > 0) {
                        bool is_named = false;
                        for (size_t j = 0; j < req->n_named; j++)
                                is_named |= streq(req->named[j], l->pci[k]);
                        if (!is_named)
                                model_fail(m, "%s got %s, which it did not name", l->id, l->pci[k]);
                }
        }
        for (size_t i = 0; i < m->n_ids_seen; i++)
                if (streq(m->ids_seen[i], l->id))
                        model_fail(m, "lease id %s was used twice", l->id);
        if (m->n_ids_seen < ELEMENTSOF(m->ids_seen))
                snprintf(m->ids_seen[m->n_ids_seen++], sizeof(m->ids_seen[0]), "%s", l->id);

        /* the waiter is freed by the table after this call */
        memmove(&m->waiters[pos], &m->waiters[pos + 1], (m->n_waiters - pos - 1) * sizeof(m->waiters[0]));
        m->n_waiters--;
        free(mw);
}

static void model_schedule(struct model *m)
{
        m->n_granted_now = 0;
        if (lease_table_schedule(&m->t, 1, model_on_granted, m) != 0)
                model_fail(m, "schedule failed");
        check_table(m);
        check_no_waiter_grantable(m);
        /* and so a second pass grants nothing */
        m->n_granted_now = 0;
        if (lease_table_schedule(&m->t, 2, model_on_granted, m) != 0 || m->n_granted_now != 0)
                model_fail(m, "a second schedule granted %zu more", m->n_granted_now);
}

static int expected_check(const struct lease_table *t, const struct lease_request *req)
{
        for (size_t j = 0; j < req->n_named; j++) {
                const struct lease_gpu *g = lease_table_find_gpu(t, req->named[j]);
                if (!g || g->vram_total_bytes < req->min_vram_bytes)
                        return -ENODEV;
        }
        size_t n = 0;
        for (size_t i = 0; i < t->n_gpus; i++)
                n += t->gpus[i].vram_total_bytes >= req->min_vram_bytes;
        return n < req->count ? -ENODEV : 0;
}

static void model_enqueue(struct model *m)
{
        if (m->n_waiters == ELEMENTSOF(m->waiters))
                return;
        static const uint64_t vram[] = { 0, 0, 0, 8 * GIB, 16 * GIB, 24 * GIB, 40 * GIB };
        static const size_t counts[] = { 1, 1, 1, 1, 1, 2, 2, 2, 3, 4 };
        struct lease_request req = count_req(counts[rnd_below(m, ELEMENTSOF(counts))], rnd_below(m, 10) >= 3,
                                             owners[rnd_below(m, 4)]);
        req.min_vram_bytes = vram[rnd_below(m, ELEMENTSOF(vram))];
        if (rnd_below(m, 100) < 3)
                req.count = 1 + rnd_below(m, N_PCI + 1);        /* sometimes more than there are */
        if (rnd_below(m, 10) < 4) {
                /* named: distinct GPUs, present or not */
                size_t n = 1 + rnd_below(m, 3);
                bool taken[N_PCI] = { false };
                for (size_t j = 0; j < n; j++) {
                        size_t i;
                        do
                                i = rnd_below(m, N_PCI);
                        while (taken[i]);
                        taken[i] = true;
                        snprintf(req.named[j], sizeof(req.named[j]), "%s", PCI[i]);
                }
                req.n_named = n;
                req.count = n;
        }
        char why[256] = "";
        int r = lease_table_check(&m->t, &req, why, sizeof(why));
        if (r != expected_check(&m->t, &req))
                model_fail(m, "lease_table_check says %d, expected %d", r, expected_check(&m->t, &req));
        if (r < 0 && !why[0])
                model_fail(m, "lease_table_check refused without saying why");
        /* rigd enqueues only what check allows; now and then try the rest too */
        if (r < 0 && rnd_below(m, 10) != 0)
                return;
        struct model_waiter *mw = calloc(1, sizeof(*mw));
        assert_non_null(mw);
        mw->req = req;
        mw->seq = ++m->next_seq;
        mw->w = lease_table_enqueue(&m->t, &req, mw);
        assert_non_null(mw->w);
        m->waiters[m->n_waiters++] = mw;
}

static void model_cancel(struct model *m, size_t k)
{
        struct model_waiter *mw = m->waiters[k];
        lease_table_cancel(&m->t, mw->w);
        memmove(&m->waiters[k], &m->waiters[k + 1], (m->n_waiters - k - 1) * sizeof(m->waiters[0]));
        m->n_waiters--;
        free(mw);
}

static const struct lease *nth_lease(const struct lease_table *t, size_t n)
{
        const struct lease *l = t->leases;
        while (l && n--)
                l = l->next;
        return l;
}

static void model_release(struct model *m)
{
        size_t n = lease_table_count(&m->t);
        if (n == 0) {
                if (lease_table_release(&m->t, "lease-0", owners[0]) != -ENOENT)
                        model_fail(m, "releasing in an empty table was not ENOENT");
                return;
        }
        const struct lease *l = nth_lease(&m->t, rnd_below(m, n));
        char id[PROTO_LEASE_ID_LEN];
        snprintf(id, sizeof(id), "%s", l->id);
        const void *owner = l->req.owner;
        const void *other = owners[rnd_below(m, 4)];
        if (other != owner && lease_table_release(&m->t, id, other) != -EPERM)
                model_fail(m, "%s released by a stranger", id);
        if (lease_table_release(&m->t, id, owner) != 0)
                model_fail(m, "%s not released by its owner", id);
        if (lease_table_count(&m->t) != n - 1)
                model_fail(m, "release of %s ended %zu leases", id, n - lease_table_count(&m->t));
        for (const struct lease *x = m->t.leases; x; x = x->next)
                if (streq(x->id, id))
                        model_fail(m, "%s is still there after release", id);
        if (lease_table_release(&m->t, id, owner) != -ENOENT)
                model_fail(m, "%s released twice", id);
}

static void model_release_owner(struct model *m)
{
        const void *owner = owners[rnd_below(m, 4)];
        size_t n_before = lease_table_count(&m->t), n_owned = 0;
        for (const struct lease *l = m->t.leases; l; l = l->next)
                n_owned += l->req.owner == owner;
        size_t n = lease_table_release_owner(&m->t, owner);
        if (n != n_owned || lease_table_count(&m->t) != n_before - n_owned)
                model_fail(m, "release_owner ended %zu of %zu leases", n, n_owned);
        for (const struct lease *l = m->t.leases; l; l = l->next)
                if (l->req.owner == owner)
                        model_fail(m, "%s outlived release_owner", l->id);
}

struct model_revocations {
        struct model *m;
        const struct lease_gpu *new_gpus;
        size_t n_new;
        char ids[256][PROTO_LEASE_ID_LEN];
        size_t n;
};

static void model_on_revoked(const struct lease *l, const char *gone_pci, void *userdata)
{
        struct model_revocations *rv = userdata;
        struct model *m = rv->m;
        if (!lease_lists(l, gone_pci))
                model_fail(m, "%s revoked for %s, which it does not hold", l->id, gone_pci);
        for (size_t j = 0; j < rv->n_new; j++)
                if (streq(rv->new_gpus[j].pci, gone_pci))
                        model_fail(m, "%s revoked for %s, which stays", l->id, gone_pci);
        for (size_t i = 0; i < rv->n; i++)
                if (streq(rv->ids[i], l->id))
                        model_fail(m, "%s revoked twice", l->id);
        if (rv->n < ELEMENTSOF(rv->ids))
                snprintf(rv->ids[rv->n++], sizeof(rv->ids[0]), "%s", l->id);
}

static void model_set_gpus(struct model *m)
{
        static const uint64_t totals[] = { 8 * GIB, 16 * GIB, 24 * GIB, 48 * GIB };
        struct lease_gpu gpus[N_PCI];
        size_t n = 0;
        for (size_t i = 0; i < N_PCI; i++) {
                if (rnd_below(m, 10) < 2)
                        continue;
                uint64_t total = totals[rnd_below(m, ELEMENTSOF(totals))];
                uint64_t free_bytes = rnd_below(m, 3) == 0 ? total / (1 + rnd_below(m, 4)) : total;
                /* a GPU keeps its size across rediscoveries, mostly */
                const struct lease_gpu *old = lease_table_find_gpu(&m->t, PCI[i]);
                if (old && rnd_below(m, 4) != 0) {
                        total = old->vram_total_bytes;
                        free_bytes = old->vram_free_bytes;
                }
                gpus[n] = gpu(PCI[i], total, free_bytes);
                gpus[n++].p2p_group = (unsigned)rnd_below(m, 3);       /* P2P groups change the pick only */
        }
        for (size_t i = n; i > 1; i--) {        /* discovery order is not stable */
                size_t j = rnd_below(m, i);
                struct lease_gpu tmp = gpus[i - 1];
                gpus[i - 1] = gpus[j];
                gpus[j] = tmp;
        }

        /* which leases must go: those holding a GPU that is not in the new list */
        static struct model_revocations rv;
        memset(&rv, 0, sizeof(rv));
        rv.m = m;
        rv.new_gpus = gpus;
        rv.n_new = n;
        char doomed[256][PROTO_LEASE_ID_LEN], kept[256][PROTO_LEASE_ID_LEN];
        size_t n_doomed = 0, n_kept = 0;
        for (const struct lease *l = m->t.leases; l; l = l->next) {
                bool is_doomed = false;
                for (size_t k = 0; k < l->req.count; k++) {
                        bool is_present = false;
                        for (size_t j = 0; j < n; j++)
                                is_present |= streq(gpus[j].pci, l->pci[k]);
                        is_doomed |= !is_present;
                }
                char *slot = is_doomed ? doomed[n_doomed++] : kept[n_kept++];
                snprintf(slot, PROTO_LEASE_ID_LEN, "%s", l->id);
                if (n_doomed == 256 || n_kept == 256)
                        model_fail(m, "too many leases for the model");
        }
        if (lease_table_set_gpus(&m->t, gpus, n, model_on_revoked, &rv) != 0)
                model_fail(m, "set_gpus failed");
        if (rv.n != n_doomed)
                model_fail(m, "set_gpus revoked %zu leases, %zu held a GPU that went", rv.n, n_doomed);
        for (size_t i = 0; i < n_doomed; i++) {
                bool is_revoked = false;
                for (size_t j = 0; j < rv.n; j++)
                        is_revoked |= streq(rv.ids[j], doomed[i]);
                if (!is_revoked)
                        model_fail(m, "%s lost a GPU but was not revoked", doomed[i]);
        }
        size_t k = 0;
        for (const struct lease *l = m->t.leases; l; l = l->next, k++)
                if (k >= n_kept || !streq(l->id, kept[k]))
                        model_fail(m, "the surviving leases are not the ones that kept their GPUs");
        if (k != n_kept)
                model_fail(m, "%zu leases survived, %zu should have", k, n_kept);
        if (m->t.n_gpus != n)
                model_fail(m, "the table has %zu GPUs, discovery found %zu", m->t.n_gpus, n);
}

static void run_model(unsigned seed, int n_steps)
{
        struct model *m = calloc(1, sizeof(*m));
        assert_non_null(m);
        m->seed = seed;
        m->rng = 0x9e3779b97f4a7c15ull ^ ((uint64_t)seed * 0x100000001b3ull);
        lease_table_init(&m->t);
        struct lease_gpu gpus[N_PCI];
        for (size_t i = 0; i < N_PCI; i++)
                gpus[i] = gpu(PCI[i], 16 * GIB, 16 * GIB);
        assert_int_equal(lease_table_set_gpus(&m->t, gpus, 4 + seed % 5, NULL, NULL), 0);

        size_t n_grants_total = 0;
        for (m->step = 0; m->step < n_steps; m->step++) {
                size_t op = rnd_below(m, 100);
                if (op < 40)
                        model_enqueue(m);
                else if (op < 52 && m->n_waiters > 0)
                        model_cancel(m, rnd_below(m, m->n_waiters));
                else if (op < 66)
                        model_release(m);
                else if (op < 68)
                        model_release_owner(m);
                else if (op < 72)
                        model_set_gpus(m);
                /* the rest: only schedule */
                check_table(m);
                if (rnd_below(m, 4) != 0 || op >= 72) {
                        size_t before = m->n_ids_seen;
                        model_schedule(m);
                        n_grants_total += m->n_ids_seen - before;
                }
                /* the daemon times waits out; the model cancels the oldest now and then */
                if (m->n_waiters > 12)
                        model_cancel(m, 0);
        }
        /* a run that never granted anything would prove nothing */
        if (n_grants_total < (size_t)n_steps / 20)
                fail_msg("seed %u: only %zu grants in %d steps", seed, n_grants_total, n_steps);
        while (m->n_waiters > 0)
                model_cancel(m, m->n_waiters - 1);
        lease_table_free(&m->t);
        free(m);
}

/* Four GPUs in two P2P pairs: {0,1} (group 0) and {2,3} (group 2), like two bridged W7900 pairs. */
static void table_with_two_pairs(struct lease_table *t)
{
        struct lease_gpu gpus[4];
        for (size_t i = 0; i < 4; i++) {
                gpus[i] = gpu(PCI[i], 16 * GIB, 16 * GIB);
                gpus[i].p2p_group = i < 2 ? 0 : 2;
        }
        lease_table_init(t);
        assert_int_equal(lease_table_set_gpus(t, gpus, 4, NULL, NULL), 0);
}

static void assert_lease_gpus(const struct lease_table *t, const char *id, const char *a, const char *b)
{
        const struct lease *l = find_lease(t, id);
        assert_non_null(l);
        assert_int_equal(l->req.count, 2);
        assert_string_equal(l->pci[0], a);
        assert_string_equal(l->pci[1], b);
}

static void test_a_count_request_gets_gpus_of_one_p2p_group(void **state)
{
        struct lease_table t;
        table_with_two_pairs(&t);
        struct lease_request one = count_req(1, true, &owner_a), two = count_req(2, true, &owner_b);
        const char *single = try_lease(&t, &one, NULL);
        assert_non_null(single);
        /* GPU 1 and GPU 2 are free and lowest, but not a pair: the other pair is. */
        const char *pair = try_lease(&t, &two, NULL);
        assert_non_null(pair);
        assert_lease_gpus(&t, pair, PCI[2], PCI[3]);
        lease_table_free(&t);
}

static void test_a_single_gpu_leaves_a_whole_pair_for_later(void **state)
{
        struct lease_table t;
        table_with_two_pairs(&t);
        struct lease_request two = count_req(2, true, &owner_a), one = count_req(1, true, &owner_b);
        int gpu3[] = { 3 };
        struct lease_request named = named_req(&owner_c, true, 1, gpu3);
        assert_non_null(try_lease(&t, &named, NULL));
        /* Group {2,3} has one free GPU left, group {0,1} two: the single GPU comes from the
         * smaller one, and the pair stays whole for the request after it. */
        const char *single = try_lease(&t, &one, NULL);
        assert_string_equal(find_lease(&t, single)->pci[0], PCI[2]);
        const char *pair = try_lease(&t, &two, NULL);
        assert_lease_gpus(&t, pair, PCI[0], PCI[1]);
        lease_table_free(&t);
}

static void test_without_a_whole_group_free_the_lowest_gpus_are_taken(void **state)
{
        struct lease_table t;
        table_with_two_pairs(&t);
        int gpu0[] = { 0 }, gpu2[] = { 2 };
        struct lease_request a = named_req(&owner_a, true, 1, gpu0), b = named_req(&owner_b, true, 1, gpu2);
        assert_non_null(try_lease(&t, &a, NULL));
        assert_non_null(try_lease(&t, &b, NULL));
        struct lease_request two = count_req(2, true, &owner_c);
        const char *pair = try_lease(&t, &two, NULL);
        assert_non_null(pair);
        assert_lease_gpus(&t, pair, PCI[1], PCI[3]);
        lease_table_free(&t);
}

static void test_random_operations_keep_the_table_consistent(void **state)
{
        for (unsigned seed = 1; seed <= 8; seed++)
                run_model(seed, 4000);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_exclusive_grant_makes_a_second_grant_of_the_gpu_impossible),
                cmocka_unit_test(test_shared_leases_share_a_gpu_but_block_exclusive),
                cmocka_unit_test(test_release_frees_the_gpu_and_lets_a_waiter_in),
                cmocka_unit_test(test_waiters_are_granted_in_arrival_order),
                cmocka_unit_test(test_count_two_waiter_is_not_starved_by_later_count_one_requests),
                cmocka_unit_test(test_later_shared_request_does_not_join_a_gpu_an_exclusive_waiter_needs),
                cmocka_unit_test(test_cancelled_count_waiter_no_longer_holds_back_later_ones),
                cmocka_unit_test(test_named_waiter_reserves_its_gpus_but_others_go_ahead),
                cmocka_unit_test(test_named_waiter_does_not_hold_back_requests_for_other_gpus),
                cmocka_unit_test(test_min_vram_filters_gpus),
                cmocka_unit_test(test_check_refuses_impossible_requests_with_enodev),
                cmocka_unit_test(test_release_by_another_owner_is_eperm_and_unknown_id_enoent),
                cmocka_unit_test(test_release_owner_ends_all_of_one_owners_leases_only),
                cmocka_unit_test(test_removed_gpu_revokes_exactly_the_leases_that_used_it),
                cmocka_unit_test(test_holders_survive_set_gpus_that_keeps_their_gpus),
                cmocka_unit_test(test_gpu_that_comes_back_lets_its_named_waiter_in),
                cmocka_unit_test(test_a_count_request_gets_gpus_of_one_p2p_group),
                cmocka_unit_test(test_a_single_gpu_leaves_a_whole_pair_for_later),
                cmocka_unit_test(test_without_a_whole_group_free_the_lowest_gpus_are_taken),
                cmocka_unit_test(test_random_operations_keep_the_table_consistent),
                /* last: under UBSan it stops the run (lease.c passes NULL to memset) */
                cmocka_unit_test(test_schedule_on_a_table_without_gpus_grants_nothing),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
