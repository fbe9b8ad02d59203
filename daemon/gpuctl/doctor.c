/* doctor.c — `gpuctl doctor`: host checks with a verdict and a fix each. Exits 1 if any fails. */
#include <stdio.h>

#include "doctor.h"
#include "gpuctl.h"
#include "log.h"
#include "machine.h"

static struct json_object *report_to_json(const struct doctor_report *rep)
{
        struct json_object *checks = json_object_new_array();
        for (size_t i = 0; i < rep->n_checks; i++) {
                const struct doctor_check *c = &rep->checks[i];
                struct json_object *o = json_object_new_object();
                json_object_object_add(o, "name", json_object_new_string(c->name));
                json_object_object_add(o, "verdict", json_object_new_string(verdict_str(c->verdict)));
                json_object_object_add(o, "detail", json_object_new_string(c->detail));
                json_object_object_add(o, "fix", json_string_or_null(c->fix));
                json_object_array_add(checks, o);
        }
        struct json_object *o = json_object_new_object();
        json_object_object_add(o, "checks", checks);
        return o;
}

static void print_report(const struct doctor_report *rep)
{
        for (size_t i = 0; i < rep->n_checks; i++) {
                const struct doctor_check *c = &rep->checks[i];
                printf("[%-4s] %-18s %s\n", verdict_str(c->verdict), c->name, c->detail);
                if (c->fix[0])
                        printf("       %-18s fix: %s\n", "", c->fix);
        }
}

int verb_doctor(const struct gpuctl *ctl, int argc, char **argv)
{
        struct machine *m;
        int r = machine_discover(ctl->root, &m);
        if (r < 0) {
                log_error_errno(r, "discovering GPUs under %s", ctl->root);
                return 1;
        }
        struct doctor_report rep;
        r = doctor_run(m, &rep);
        if (r < 0) {
                machine_free(m);
                log_error_errno(r, "running checks");
                return 1;
        }
        if (ctl->is_json)
                json_print(report_to_json(&rep));
        else
                print_report(&rep);

        int code = doctor_worst(&rep) == VERDICT_FAIL ? 1 : 0;
        doctor_report_free(&rep);
        machine_free(m);
        return code;
}
