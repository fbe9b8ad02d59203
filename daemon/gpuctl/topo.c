/* topo.c — `gpuctl topo`: the link matrix (like `nvidia-smi topo -m`) and, per pair, why P2P
 * does or does not work. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "gpuctl.h"
#include "log.h"
#include "machine.h"

static void cell_text(const struct gpu_link *l, char *buf, size_t size)
{
        const char *type = l->type == LINK_XGMI ? "XGMI" : l->type == LINK_NVLINK ? "NVLINK" :
                           l->type == LINK_PCIE ? "PCIE" : "NONE";
        snprintf(buf, size, "%s%s", type, l->has_p2p ? "+P2P" : "");
}

static void print_matrix(const struct machine *m)
{
        size_t n = m->n_gpus;
        if (n + 1 > TABLE_MAX_COLS) {
                printf("(%zu GPUs: matrix too wide, see the pair list)\n", n);
                return;
        }
        char names[TABLE_MAX_COLS][16];
        const char *header[TABLE_MAX_COLS] = { "" };
        for (size_t i = 0; i < n; i++) {
                snprintf(names[i], sizeof(names[i]), "GPU%zu", i);
                header[i + 1] = names[i];
        }
        struct table t;
        if (table_init(&t, n + 1, header) < 0)
                return;
        for (size_t i = 0; i < n; i++) {
                char cells[TABLE_MAX_COLS][32];
                const char *row[TABLE_MAX_COLS];
                row[0] = names[i];
                for (size_t j = 0; j < n; j++) {
                        const struct gpu_link *l = machine_link(m, (int)i, (int)j);
                        if (l)
                                cell_text(l, cells[j], sizeof(cells[j]));
                        else
                                snprintf(cells[j], sizeof(cells[j]), "X");
                        row[j + 1] = cells[j];
                }
                table_add_row(&t, row);
        }
        table_print(&t);
        table_free(&t);
}

static void print_pairs(const struct machine *m)
{
        for (size_t i = 0; i < m->n_links; i++) {
                const struct gpu_link *l = &m->links[i];
                char hops[32] = "", bw[32] = "";
                if (l->hops >= 0)
                        snprintf(hops, sizeof(hops), ", %d hop%s", l->hops, l->hops == 1 ? "" : "s");
                if (!isnan(l->bandwidth_gbps))
                        snprintf(bw, sizeof(bw), ", %.1f GB/s", l->bandwidth_gbps);
                printf("GPU%d-GPU%d: %s%s%s, %s\n", l->a, l->b, link_type_str(l->type), hops, bw,
                       l->has_p2p ? "P2P ok" : "no P2P:");
                for (size_t k = 0; k < l->n_reasons; k++)
                        printf("    - %s\n", l->reasons[k]);
        }
}

int verb_topo(const struct gpuctl *ctl, int argc, char **argv)
{
        struct machine *m;
        int r = machine_discover(ctl->root, &m);
        if (r < 0) {
                log_error_errno(r, "discovering GPUs under %s", ctl->root);
                return 1;
        }

        if (ctl->is_json) {
                struct json_object *gpus = json_object_new_array(), *links = json_object_new_array();
                for (size_t i = 0; i < m->n_gpus; i++)
                        json_object_array_add(gpus, gpu_to_json(&m->gpus[i], true));
                for (size_t i = 0; i < m->n_links; i++)
                        json_object_array_add(links, link_to_json(&m->links[i]));
                struct json_object *o = json_object_new_object();
                json_object_object_add(o, "gpus", gpus);
                json_object_object_add(o, "links", links);
                json_print(o);
        } else if (m->n_gpus == 0) {
                printf("No GPU found on this machine: nothing to link.\n");
        } else if (m->n_gpus == 1) {
                printf("One GPU (%s %s): no pairs to link.\n", m->gpus[0].pci, m->gpus[0].name);
        } else {
                print_matrix(m);
                printf("\n");
                print_pairs(m);
        }
        machine_free(m);
        return 0;
}
