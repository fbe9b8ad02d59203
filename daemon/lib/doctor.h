/* doctor.h — host checks for GPU serving, each with a verdict and a concrete fix (DESIGN §4.6). */
#pragma once

#include <stddef.h>

struct machine;

enum verdict { VERDICT_OK, VERDICT_WARN, VERDICT_FAIL };

struct doctor_check {
        char name[40];                  /* stable id: "p2p-kernel-config" */
        enum verdict verdict;
        char detail[768];               /* what was found */
        char fix[512];                  /* what to do; "" when ok */
};

struct doctor_report {
        struct doctor_check *checks;
        size_t n_checks;
};

int doctor_run(const struct machine *m, struct doctor_report *out);
void doctor_report_free(struct doctor_report *r);

/* The worst verdict of the report. */
enum verdict doctor_worst(const struct doctor_report *r);
const char *verdict_str(enum verdict v);
