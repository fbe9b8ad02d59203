/* step_graph.h — the ops of one decode step, recorded and run as one CUDA/HIP graph, so the
 * hundreds of kernel launches of a token cost one launch (a launch takes a few microseconds of
 * CPU and leaves a gap on the GPU; a graph runs its kernels back to back).
 *
 * The backend records each op of a step as a fixed-size record holding everything its launch
 * needs (pointers, sizes, never the tokens or positions: kernels read those from device memory,
 * struct gpu_batch). At the end of the step, when the records equal the ones the graph was
 * captured from, byte for byte, the graph is launched again; otherwise the records are run
 * under stream capture into a new graph. Decode records the same ops every token, so a capture
 * happens once per session.
 *
 * Where the device allows it, each kernel-to-kernel edge of the captured graph is a programmatic
 * one (gpu_launch_kernel's launches are captured so; an edge capture left plain is made so here):
 * the next kernel is launched as soon as every block of the one before has exited, and its
 * blocks wait at their first statement (gpu_grid_begin, vendor.h) for that one's writes. The
 * launch of each of a decode step's ~400 kernels then overlaps the end of the one before. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "vendor.h"

typedef void (*step_op_fn)(void *ctx, const void *op);

struct step_graph {
        size_t op_bytes;                /* size of one record */
        unsigned char *ops;             /* this step's records */
        size_t n_ops, cap;
        unsigned char *captured;        /* the records exec was captured from */
        size_t n_captured;
        cudaGraphExec_t exec;
        bool has_exec;
        bool is_off;                    /* capture failed once, or RIG_GPU_GRAPHS=0: ops run directly */
        cudaError_t capture_error;      /* why a capture failed (then is_off); cudaSuccess: none did */
        bool launches_early;            /* each kernel launched while the one before runs (PDL) */
};

/* launches_early: the device launches a graph's kernel while the one before it still runs
 * (struct gpu_launch's launches_early). */
void step_graph_init(struct step_graph *s, size_t op_bytes, bool launches_early);
void step_graph_free(struct step_graph *s);

/* Starts a step's recording. */
void step_graph_begin(struct step_graph *s);

/* Appends one record (op_bytes, padding zeroed by the caller so equal ops compare equal).
 * -ENOMEM when there is no room: the caller then runs the step's ops directly. */
int step_graph_record(struct step_graph *s, const void *op);

/* The step's last record, to change in place; NULL when none is recorded. */
void *step_graph_last(struct step_graph *s);

/* Runs the recorded ops on stream, by the graph, a new capture, or directly (run(ctx, op) in
 * order) when graphs are off or capture fails. The first failure of the graph calls, if any. */
cudaError_t step_graph_run(struct step_graph *s, cudaStream_t stream, step_op_fn run, void *ctx);
