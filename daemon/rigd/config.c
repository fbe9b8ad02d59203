/* config.c — parsing rigd.conf with inih. inih hands the handler no line numbers in Debian's
 * build, so the reader counts lines itself: every warning names file:line. */
#include <errno.h>
#include <math.h>
#include <dirent.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include <ini.h>

#include "config.h"
#include "log.h"
#include "util.h"

struct parse_state {
        struct rigd_config *config;
        const char *path;
        FILE *f;
        int line;
        int n_bad;
};

static int bad_line(struct parse_state *s, const char *fmt, const char *a, const char *b)
{
        char what[256];
        snprintf(what, sizeof(what), fmt, a, b);
        log_warning("%s:%d: %s; the line is ignored", s->path, s->line, what);
        s->n_bad++;
        return 1;       /* inih goes on: one bad line costs only itself */
}

/* inih reports only the first line it cannot parse; this names every one. */
static void check_syntax(struct parse_state *s, const char *line)
{
        if (s->line == 1 && startswith(line, "\xEF\xBB\xBF"))
                line += 3;      /* a UTF-8 byte-order mark, which inih skips too */
        line += strspn(line, " \t\r\n");
        if (!*line || *line == ';' || *line == '#')
                return;
        if (*line == '[' ? strchr(line, ']') != NULL : strpbrk(line, "=:") != NULL)
                return;
        char shown[64];
        snprintf(shown, sizeof(shown), "%.*s", (int)strcspn(line, "\r\n"), line);
        bad_line(s, "'%s' is not 'key = value' or '[section]'%s", shown, "");
}

/* inih reads in pieces of its line buffer; a longer line would come back as two, and its tail
 * (behind a comment sign, say) would apply. Such a line is dropped whole and handed on empty. */
static char *read_line(char *buf, int size, void *stream)
{
        struct parse_state *s = stream;
        char *line = fgets(buf, size, s->f);
        if (!line)
                return NULL;
        s->line++;
        if (!strchr(line, '\n') && !feof(s->f)) {
                int c;
                while ((c = fgetc(s->f)) != EOF && c != '\n')
                        ;
                char limit[16];
                snprintf(limit, sizeof(limit), "%d", size - 3);      /* inih keeps room for \r\n\0 */
                bad_line(s, "longer than %s bytes%s", limit, "");
                strscpy(buf, "\n", (size_t)size);
                return buf;
        }
        check_syntax(s, line);
        return line;
}

static bool is_group_name(const char *v)
{
        size_t len = strlen(v);
        if (len == 0 || len >= CONFIG_GROUP_LEN)
                return false;
        for (const char *p = v; *p; p++)
                if (!(*p == '-' || *p == '_' || *p == '.' || (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
                      (*p >= 'A' && *p <= 'Z')))
                        return false;
        return true;
}

/* A positive decimal number ("190", "187.5"), nothing after it. */
static bool parse_watts(const char *v, double *out)
{
        char *end;
        errno = 0;
        double w = strtod(v, &end);
        if (errno || end == v || *end || !(w > 0) || w > 1e6)
                return false;
        *out = w;
        return true;
}

static struct config_gpu *gpu_section(struct rigd_config *c, const char *selector)
{
        for (size_t i = 0; i < c->n_gpus; i++)
                if (streq(c->gpus[i].selector, selector))
                        return &c->gpus[i];
        if (c->n_gpus == CONFIG_MAX_GPU_SECTIONS)
                return NULL;
        struct config_gpu *g = &c->gpus[c->n_gpus++];
        strscpy(g->selector, selector, sizeof(g->selector));
        g->cap.w = g->idle_cap.w = NAN;
        return g;
}

static int handle_gpu(struct parse_state *s, const char *selector, const char *key, const char *value)
{
        if (!*selector || strlen(selector) >= CONFIG_SELECTOR_LEN)
                return bad_line(s, "[gpu:%s] needs '*', a PCI address or a unique id%s", selector, "");
        struct config_watts *target = NULL;
        struct config_gpu *g = gpu_section(s->config, selector);
        if (!g)
                return bad_line(s, "[gpu:%s]: more GPU sections than rigd keeps%s", selector, "");
        if (streq(key, "power_cap_watts"))
                target = &g->cap;
        else if (streq(key, "idle_power_cap_watts"))
                target = &g->idle_cap;
        else
                return bad_line(s, "unknown key '%s' in [gpu:%s] (known: power_cap_watts, idle_power_cap_watts)", key,
                                selector);
        double w;
        if (!parse_watts(value, &w))
                return bad_line(s, "%s = '%s' is not a number of watts", key, value);
        target->w = w;
        snprintf(target->where, sizeof(target->where), "%s:%d", s->path, s->line);
        return 1;
}

static int handle(void *user, const char *section, const char *key, const char *value)
{
        struct parse_state *s = user;
        if (startswith(section, "gpu:"))
                return handle_gpu(s, section + 4, key, value);
        if (!streq(section, "rigd"))
                return bad_line(s, "unknown section [%s] (key %s)", section, key);
        if (streq(key, "power_check_interval_s")) {
                double v;
                if (!parse_watts(value, &v) || v < 0.05 || v > 3600)
                        return bad_line(s, "power_check_interval_s = '%s' is not a number of seconds in [0.05, 3600]%s",
                                        value, "");
                s->config->power_check_s = v;
                return 1;
        }
        char *target = streq(key, "lease_group") ? s->config->lease_group
                     : streq(key, "admin_group") ? s->config->admin_group
                                                 : NULL;
        if (!target)
                return bad_line(s, "unknown key '%s'%s (known: lease_group, admin_group, power_check_interval_s)",
                                key, "");
        if (!is_group_name(value))
                return bad_line(s, "%s = '%s' is not a group name or number", key, value);
        strscpy(target, value, CONFIG_GROUP_LEN);
        return 1;
}

void config_init_defaults(struct rigd_config *c)
{
        memset(c, 0, sizeof(*c));
        c->power_check_s = 10;
        strscpy(c->lease_group, "render", sizeof(c->lease_group));
        strscpy(c->admin_group, "rig-admin", sizeof(c->admin_group));
}

int config_load_file(struct rigd_config *c, const char *path)
{
        struct parse_state s = { .config = c, .path = path };
        s.f = fopen(path, "re");
        if (!s.f)
                return -errno;
        /* An indented line continues the previous value in inih's default; here it is an error
         * like any other, so what a warning calls ignored is ignored. */
        ini_allow_multiline = false;
        int r = ini_parse_stream(read_line, &s, handle, &s);     /* > 0: a syntax error, named already */
        fclose(s.f);
        return r < 0 ? -ENOMEM : s.n_bad;
}

static int is_conf_file(const struct dirent *e)
{
        size_t len = strlen(e->d_name);
        return e->d_name[0] != '.' && len > 5 && streq(e->d_name + len - 5, ".conf");
}

int config_load(struct rigd_config *c, const char *root, const char *explicit_path)
{
        config_init_defaults(c);
        if (explicit_path) {
                int r = config_load_file(c, explicit_path);
                return r < 0 ? log_error_errno(r, "reading config %s", explicit_path) : r;
        }

        const char *prefix = streq(root, "/") ? "" : root;
        char path[4096];
        snprintf(path, sizeof(path), "%s/etc/rig/rigd.conf", prefix);
        int r = config_load_file(c, path);
        if (r < 0 && r != -ENOENT)
                log_warning_errno(r, "reading config %s; using the defaults", path);
        int n_bad = r > 0 ? r : 0;

        /* rigd.conf.d/NAME.conf in name order; scandir, not glob: the root may hold '*' or '['. */
        char dir[4096];
        snprintf(dir, sizeof(dir), "%s/etc/rig/rigd.conf.d", prefix);
        struct dirent **entries;
        int n = scandir(dir, &entries, is_conf_file, alphasort);
        for (int i = 0; i < n; i++) {
                snprintf(path, sizeof(path), "%s/%s", dir, entries[i]->d_name);
                r = config_load_file(c, path);
                if (r < 0)
                        log_warning_errno(r, "reading config %s", path);
                else
                        n_bad += r;
                free(entries[i]);
        }
        if (n >= 0)
                free(entries);
        return n_bad;
}
