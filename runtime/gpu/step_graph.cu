/* step_graph.cu — see step_graph.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "step_graph.h"

void step_graph_init(struct step_graph *s, size_t op_bytes, bool launches_early)
{
        memset(s, 0, sizeof(*s));
        s->op_bytes = op_bytes;
        const char *env = getenv("RIG_GPU_GRAPHS");
        s->is_off = env && strcmp(env, "0") == 0;
        s->launches_early = GPU_HAS_PDL && launches_early;
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

void *step_graph_last(struct step_graph *s)
{
        return s->n_ops ? s->ops + (s->n_ops - 1) * s->op_bytes : NULL;
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

#if GPU_HAS_PDL
static bool is_kernel(cudaGraphNode_t node)
{
        enum cudaGraphNodeType type;
        return cudaGraphNodeGetType(node, &type) == cudaSuccess && type == cudaGraphNodeTypeKernel;
}

/* Every plain edge from a kernel to a kernel becomes a programmatic one (step_graph.h). */
static cudaError_t launch_kernels_early(cudaGraph_t graph)
{
        size_t n = 0;
        cudaError_t e = cudaGraphGetEdges(graph, NULL, NULL, NULL, &n);
        if (e != cudaSuccess || n == 0)
                return e;
        cudaGraphNode_t *from = (cudaGraphNode_t *)calloc(n, sizeof(*from));
        cudaGraphNode_t *to = (cudaGraphNode_t *)calloc(n, sizeof(*to));
        cudaGraphEdgeData *data = (cudaGraphEdgeData *)calloc(n, sizeof(*data));
        e = from && to && data ? cudaGraphGetEdges(graph, from, to, data, &n) : cudaErrorMemoryAllocation;
        for (size_t i = 0; i < n && e == cudaSuccess; i++) {
                if (data[i].type != cudaGraphDependencyTypeDefault || !is_kernel(from[i]) || !is_kernel(to[i]))
                        continue;
                cudaGraphEdgeData early;
                memset(&early, 0, sizeof(early));
                early.from_port = cudaGraphKernelNodePortProgrammatic;
                early.type = cudaGraphDependencyTypeProgrammatic;
                e = cudaGraphRemoveDependencies(graph, &from[i], &to[i], &data[i], 1);
                if (e == cudaSuccess)
                        e = cudaGraphAddDependencies(graph, &from[i], &to[i], &early, 1);
        }
        free(from);
        free(to);
        free(data);
        return e;
}
#endif

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
#if GPU_HAS_PDL
        if (s->launches_early)
                e = launch_kernels_early(graph);
#endif
        if (e == cudaSuccess)
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
        cudaError_t e = matches_capture(s) ? cudaSuccess : capture(s, stream, run, ctx);
        if (e != cudaSuccess) {
                /* a capture that fails (an op the runtime cannot capture) leaves the ops unrun:
                 * run them as plain launches, and from now on every step */
                cudaGetLastError();
                s->capture_error = e;
                drop_exec(s);
                s->is_off = true;
                run_directly(s, run, ctx);
                return cudaSuccess;
        }
        return cudaGraphLaunch(s->exec, stream);
}
