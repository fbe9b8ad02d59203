/* top_k.c — see top_k.h. */
#include <stdlib.h>

#include "top_k.h"

static int best_first(const void *a, const void *b)
{
        const struct rig_candidate *x = a, *y = b;
        return rig_candidate_better(x, y) ? -1 : rig_candidate_better(y, x) ? 1 : 0;
}

/* Keeps heap h[0..n) with the worst candidate at the root. */
static void sift_down(struct rig_candidate *h, size_t n, size_t i)
{
        for (;;) {
                size_t l = 2 * i + 1, r = l + 1, m = i;
                if (l < n && rig_candidate_better(&h[m], &h[l]))
                        m = l;
                if (r < n && rig_candidate_better(&h[m], &h[r]))
                        m = r;
                if (m == i)
                        return;
                struct rig_candidate t = h[i];
                h[i] = h[m];
                h[m] = t;
                i = m;
        }
}

/* A k-element heap over the row, then the k sorted: a 128k row sorted per token would cost
 * milliseconds. */
size_t rig_top_k(const float *x, size_t n, size_t k, struct rig_candidate *out)
{
        if (k > n)
                k = n;
        if (k == 0)
                return 0;
        for (size_t i = 0; i < k; i++)
                out[i] = (struct rig_candidate){ (int32_t)i, x[i] };
        for (size_t i = k / 2; i-- > 0;)
                sift_down(out, k, i);
        for (size_t i = k; i < n; i++) {
                struct rig_candidate c = { (int32_t)i, x[i] };
                if (rig_candidate_better(&c, &out[0])) {
                        out[0] = c;
                        sift_down(out, k, 0);
                }
        }
        qsort(out, k, sizeof(*out), best_first);
        return k;
}

void rig_penalize(float *x, size_t n, const int32_t *ids, size_t n_ids, float penalty)
{
        for (size_t i = 0; i < n_ids; i++) {
                if (ids[i] < 0 || (size_t)ids[i] >= n)
                        continue;
                float *l = &x[ids[i]];
                *l = *l > 0 ? *l / penalty : *l * penalty;
        }
}
