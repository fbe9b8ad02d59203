/* topo.h — links between every pair of a machine's GPUs: type, hops, bandwidth, P2P and why not. */
#pragma once

#include <stddef.h>

struct machine;
struct gpu_vendor;

/* Fills m->links for every pair (a < b). The vendor of both GPUs decides; pairs of different
 * vendors, or a vendor without an answer, get a plain PCIe link without P2P and the reason. */
int topo_build(struct machine *m, const struct gpu_vendor *const *vendors, size_t n_vendors);
