/* step_graph.cu — see step_graph.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "step_graph.h"

void step_graph_init(struct step_graph *s, size_t op_bytes)
{
        memset(s, 0, sizeof(*s));
        s->op_bytes = op_bytes;
        const char *env = getenv("RIG_GPU_GRAPHS");
        s->is_off = env && strcmp(env, "0") == 0;
}

static void drop_exec(struct step_graph *s)
{
        if (s->has_exec)
                cudaGraphExecDestroy(s->exec);
        s->has_exec = false;
        s->n_captured = 0;
}

void step_graph_free(struct step_graph *s)
{
        drop_exec(s);
        free(s->ops);
        free(s->captured);
        memset(s, 0, sizeof(*s));
}

void step_graph_begin(struct step_graph *s)
{
        s->n_ops = 0;
}

int step_graph_record(struct step_graph *s, const void *op)
{
        if (s->n_ops == s->cap) {
                size_t cap = s->cap ? 2 * s->cap : 256;
                unsigned char *ops = (unsigned char *)realloc(s->ops, cap * s->op_bytes);
                if (!ops)
                        return -ENOMEM;
                s->ops = ops;
                s->cap = cap;
        }
        memcpy(s->ops + s->n_ops * s->op_bytes, op, s->op_bytes);
        s->n_ops++;
        return 0;
}

static void run_directly(struct step_graph *s, step_op_fn run, void *ctx)
{
        for (size_t i = 0; i < s->n_ops; i++)
                run(ctx, s->ops + i * s->op_bytes);
}

static bool matches_capture(const struct step_graph *s)
{
        return s->has_exec && s->n_captured == s->n_ops && memcmp(s->captured, s->ops, s->n_ops * s->op_bytes) == 0;
}

/* The records run under capture into a graph, instantiated; the records kept to compare. */
static cudaError_t capture(struct step_graph *s, cudaStream_t stream, step_op_fn run, void *ctx)
{
        drop_exec(s);
        unsigned char *copy = (unsigned char *)realloc(s->captured, s->n_ops * s->op_bytes + 1);
        if (!copy)
                return cudaErrorMemoryAllocation;
        s->captured = copy;
        cudaGraph_t graph;
        cudaError_t e = cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal);
        if (e != cudaSuccess)
                return e;
        run_directly(s, run, ctx);
        e = cudaStreamEndCapture(stream, &graph);
        if (e != cudaSuccess)
                return e;
        e = cudaGraphInstantiateWithFlags(&s->exec, graph, 0);
        cudaGraphDestroy(graph);
        if (e != cudaSuccess)
                return e;
        s->has_exec = true;
        memcpy(s->captured, s->ops, s->n_ops * s->op_bytes);
        s->n_captured = s->n_ops;
        return cudaSuccess;
}

cudaError_t step_graph_run(struct step_graph *s, cudaStream_t stream, step_op_fn run, void *ctx)
{
        if (s->is_off || s->n_ops == 0) {
                run_directly(s, run, ctx);
                return cudaSuccess;
        }
        if (!matches_capture(s) && capture(s, stream, run, ctx) != cudaSuccess) {
                /* a capture that fails (an op the runtime cannot capture) leaves the ops unrun:
                 * run them as plain launches, and from now on every step */
                cudaGetLastError();
                drop_exec(s);
                s->is_off = true;
                run_directly(s, run, ctx);
                return cudaSuccess;
        }
        return cudaGraphLaunch(s->exec, stream);
}
