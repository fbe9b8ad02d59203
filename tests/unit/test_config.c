/* Unit tests of rigd's configuration: defaults, a good file, rigd.conf.d overriding in name order,
 * and bad lines: each one is counted, warned about with file:line, and costs only itself. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"

/* every cmocka test takes a state it rarely needs (CMake builds with -Wno-unused-parameter) */
#pragma GCC diagnostic ignored "-Wunused-parameter"

static char root[256];          /* a fresh directory per test, standing in for / */

static int setup_root(void **state)
{
        snprintf(root, sizeof(root), "/tmp/rig-test-config-XXXXXX");
        return mkdtemp(root) ? 0 : -1;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        return remove(path);
}

static void capture_restore(void);

static int teardown_root(void **state)
{
        capture_restore();
        return nftw(root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Writes text to root/rel, making the directories on the way; returns the full path (static). */
static const char *write_file(const char *rel, const char *text)
{
        static char path[512];
        snprintf(path, sizeof(path), "%s/%s", root, rel);
        for (char *p = path + strlen(root) + 1; (p = strchr(p, '/')); p++) {
                *p = '\0';
                if (mkdir(path, 0755) < 0 && errno != EEXIST)
                        fail_msg("mkdir %s: %s", path, strerror(errno));
                *p = '/';
        }
        FILE *f = fopen(path, "we");
        assert_non_null(f);
        assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
        assert_int_equal(fclose(f), 0);
        return path;
}

/* What log.c writes to stderr while a call runs: fd 2 goes to a temporary file in between.
 * Nothing between start and end may fail an assertion, or cmocka's report would go there too;
 * the teardown puts fd 2 back in any case. */
struct capture {
        FILE *f;
};

static int saved_stderr = -1;

static void capture_start(struct capture *c)
{
        fflush(stderr);
        c->f = tmpfile();
        assert_non_null(c->f);
        saved_stderr = dup(STDERR_FILENO);
        assert_true(saved_stderr >= 0);
        assert_true(dup2(fileno(c->f), STDERR_FILENO) >= 0);
}

static void capture_restore(void)
{
        if (saved_stderr < 0)
                return;
        fflush(stderr);
        dup2(saved_stderr, STDERR_FILENO);
        close(saved_stderr);
        saved_stderr = -1;
}

/* Ends the capture; returns what was written (free it). */
static char *capture_end(struct capture *c)
{
        capture_restore();
        off_t size = lseek(fileno(c->f), 0, SEEK_END);
        assert_true(size >= 0);
        char *text = calloc(1, (size_t)size + 1);
        assert_non_null(text);
        assert_int_equal(pread(fileno(c->f), text, (size_t)size, 0), size);
        fclose(c->f);
        return text;
}

static size_t count_lines(const char *text)
{
        size_t n = 0;
        for (; *text; text++)
                n += *text == '\n';
        return n;
}

static int load_file_captured(struct rigd_config *c, const char *path, char **log)
{
        struct capture cap;
        capture_start(&cap);
        int r = config_load_file(c, path);
        *log = capture_end(&cap);
        return r;
}

/* ---- tests ---- */

static void test_defaults_are_render_and_rig_admin(void **state)
{
        struct rigd_config c;
        memset(&c, 'x', sizeof(c));
        config_init_defaults(&c);
        assert_string_equal(c.lease_group, "render");
        assert_string_equal(c.admin_group, "rig-admin");

        /* no files at all: the defaults, and nothing to complain about */
        char *log;
        struct capture cap;
        capture_start(&cap);
        assert_int_equal(config_load(&c, root, NULL), 0);
        log = capture_end(&cap);
        assert_string_equal(log, "");
        free(log);
        assert_string_equal(c.lease_group, "render");
        assert_string_equal(c.admin_group, "rig-admin");
}

static void test_good_file_sets_both_groups(void **state)
{
        const char *path = write_file("etc/rig/rigd.conf",
                                      "# rigd configuration\n"
                                      "; another comment\n"
                                      "\n"
                                      "[rigd]\n"
                                      "lease_group = gpu-users   ; who may lease\n"
                                      "admin_group=wheel\r\n"
                                      "\n");
        struct rigd_config c;
        config_init_defaults(&c);
        char *log;
        assert_int_equal(load_file_captured(&c, path, &log), 0);
        assert_string_equal(log, "");
        free(log);
        assert_string_equal(c.lease_group, "gpu-users");
        assert_string_equal(c.admin_group, "wheel");

        /* numbers and the other allowed characters are group names too */
        path = write_file("other.conf", "[rigd]\nlease_group = 107\nadmin_group: Rig_Admins.2\n");
        assert_int_equal(config_load_file(&c, path), 0);
        assert_string_equal(c.lease_group, "107");
        assert_string_equal(c.admin_group, "Rig_Admins.2");

        /* a value of the longest allowed length */
        char text[256], name[CONFIG_GROUP_LEN];
        memset(name, 'g', CONFIG_GROUP_LEN - 1);
        name[CONFIG_GROUP_LEN - 1] = '\0';
        snprintf(text, sizeof(text), "[rigd]\nlease_group = %s\n", name);
        path = write_file("long.conf", text);
        assert_int_equal(config_load_file(&c, path), 0);
        assert_string_equal(c.lease_group, name);
}

static void test_later_value_in_one_file_wins(void **state)
{
        const char *path = write_file("a.conf", "[rigd]\nlease_group = one\nlease_group = two\n");
        struct rigd_config c;
        config_init_defaults(&c);
        assert_int_equal(config_load_file(&c, path), 0);
        assert_string_equal(c.lease_group, "two");
        assert_string_equal(c.admin_group, "rig-admin");
}

static void test_conf_d_files_override_in_name_order(void **state)
{
        write_file("etc/rig/rigd.conf", "[rigd]\nlease_group = video\nadmin_group = adm\n");
        /* written out of order: the names decide, not the creation order */
        write_file("etc/rig/rigd.conf.d/20-site.conf", "[rigd]\nlease_group = site\n");
        write_file("etc/rig/rigd.conf.d/10-vendor.conf", "[rigd]\nlease_group = vendor\nadmin_group = vendor-admin\n");
        write_file("etc/rig/rigd.conf.d/30-local.conf.disabled", "[rigd]\nlease_group = disabled\n");
        write_file("etc/rig/rigd.conf.d/README", "[rigd]\nadmin_group = readme\n");

        struct rigd_config c;
        memset(&c, 0, sizeof(c));
        assert_int_equal(config_load(&c, root, NULL), 0);
        assert_string_equal(c.lease_group, "site");
        assert_string_equal(c.admin_group, "vendor-admin");

        /* with no main file, the drop-ins still apply over the defaults */
        char path[512];
        snprintf(path, sizeof(path), "%s/etc/rig/rigd.conf", root);
        assert_int_equal(unlink(path), 0);
        write_file("etc/rig/rigd.conf.d/20-site.conf", "[rigd]\n# nothing\n");
        assert_int_equal(config_load(&c, root, NULL), 0);
        assert_string_equal(c.lease_group, "vendor");
        assert_string_equal(c.admin_group, "vendor-admin");
}

static void test_config_load_starts_from_the_defaults(void **state)
{
        write_file("etc/rig/rigd.conf", "[rigd]\nadmin_group = adm\n");
        struct rigd_config c;
        config_init_defaults(&c);
        snprintf(c.lease_group, sizeof(c.lease_group), "stale");
        assert_int_equal(config_load(&c, root, NULL), 0);
        assert_string_equal(c.lease_group, "render");
        assert_string_equal(c.admin_group, "adm");
}

static void test_each_bad_line_is_counted_and_the_rest_applies(void **state)
{
        const char *path = write_file("etc/rig/rigd.conf",
                                      "[rigd]\n"                                /* 1 */
                                      "lease_group = first\n"                   /* 2 */
                                      "this is not a setting\n"                 /* 3: garbage */
                                      "leese_group = typo\n"                    /* 4: unknown key */
                                      "admin_group = has space\n"               /* 5: bad value */
                                      "admin_group = wheel!\n"                  /* 6: bad value */
                                      "admin_group =\n"                         /* 7: empty value */
                                      "[rigd\n"                                 /* 8: broken section */
                                      "[power]\n"                               /* 9 */
                                      "cap_w = 300\n"                           /* 10: unknown section */
                                      "[gpu:0000:03:00.0]\n"                    /* 11 */
                                      "power_cap_w = 250\n"                     /* 12: not enforced yet */
                                      "[rigd]\n"                                /* 13 */
                                      "admin_group = adm\n");                   /* 14 */
        struct rigd_config c;
        config_init_defaults(&c);
        char *log;
        assert_int_equal(load_file_captured(&c, path, &log), 8);
        assert_int_equal(count_lines(log), 8);
        free(log);
        assert_string_equal(c.lease_group, "first");
        assert_string_equal(c.admin_group, "adm");

        /* a value that does not fit is refused, not cut */
        char text[256], name[CONFIG_GROUP_LEN + 1];
        memset(name, 'g', CONFIG_GROUP_LEN);
        name[CONFIG_GROUP_LEN] = '\0';
        snprintf(text, sizeof(text), "[rigd]\nlease_group = %s\nadmin_group = ok\n", name);
        path = write_file("long.conf", text);
        assert_int_equal(load_file_captured(&c, path, &log), 1);
        free(log);
        assert_string_equal(c.lease_group, "first");
        assert_string_equal(c.admin_group, "ok");

        /* config_load adds up the bad lines of every file */
        write_file("etc/rig/rigd.conf.d/50-x.conf", "[rigd]\nnope = 1\nlease_group = last\n");
        struct capture cap;
        capture_start(&cap);
        int r = config_load(&c, root, NULL);
        free(capture_end(&cap));
        assert_int_equal(r, 9);
        assert_string_equal(c.lease_group, "last");
        assert_string_equal(c.admin_group, "adm");
}

static void test_warning_names_file_and_line(void **state)
{
        const char *path = write_file("etc/rig/rigd.conf",
                                      "# comment\n"
                                      "[rigd]\n"
                                      "bogus line\n"
                                      "lease_group = video\n"
                                      "\n"
                                      "colour = blue\n"
                                      "[nope]\n"
                                      "x = 1\n"
                                      "[rigd]\n"
                                      "admin_group = bad value\n");
        struct rigd_config c;
        config_init_defaults(&c);
        char *log;
        assert_int_equal(load_file_captured(&c, path, &log), 4);
        char want[600];
        static const struct {
                int line;
                const char *what;
        } expected[] = {
                { 3, "bogus line" }, { 6, "colour" }, { 8, "[nope]" }, { 10, "bad value" },
        };
        for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++) {
                snprintf(want, sizeof(want), "%s:%d: ", path, expected[i].line);
                const char *at = strstr(log, want);
                if (!at)
                        fail_msg("no warning for %s in:\n%s", want, log);
                const char *eol = strchr(at, '\n');
                assert_non_null(eol);
                const char *what = strstr(at, expected[i].what);
                if (!what || what > eol)
                        fail_msg("the warning for line %d does not say '%s': %.*s", expected[i].line,
                                 expected[i].what, (int)(eol - at), at);
        }
        assert_non_null(strstr(log, "warning: "));
        assert_int_equal(count_lines(log), 4);
        free(log);
        assert_string_equal(c.lease_group, "video");
}

static void test_missing_file_is_enoent_and_silent(void **state)
{
        char path[512];
        snprintf(path, sizeof(path), "%s/etc/rig/none.conf", root);
        struct rigd_config c;
        config_init_defaults(&c);
        char *log;
        assert_int_equal(load_file_captured(&c, path, &log), -ENOENT);
        assert_string_equal(log, "");
        free(log);
        assert_string_equal(c.lease_group, "render");
}

static void test_explicit_config_must_exist_and_is_the_only_file_read(void **state)
{
        write_file("etc/rig/rigd.conf", "[rigd]\nlease_group = from-root\n");
        write_file("etc/rig/rigd.conf.d/10-a.conf", "[rigd]\nadmin_group = from-drop-in\n");
        char missing[512];
        snprintf(missing, sizeof(missing), "%s/elsewhere/rigd.conf", root);

        struct rigd_config c;
        struct capture cap;
        capture_start(&cap);
        int r = config_load(&c, root, missing);
        char *log = capture_end(&cap);
        assert_int_equal(r, -ENOENT);
        assert_non_null(strstr(log, missing));
        free(log);
        assert_string_equal(c.lease_group, "render");  /* the defaults, not the files under root */
        assert_string_equal(c.admin_group, "rig-admin");

        const char *explicit_path = write_file("elsewhere/rigd.conf", "[rigd]\nlease_group = explicit\n");
        assert_int_equal(config_load(&c, root, explicit_path), 0);
        assert_string_equal(c.lease_group, "explicit");
        assert_string_equal(c.admin_group, "rig-admin");
}

/* ---- lines inih sees differently from the line checker ---- */

/* inih reads at most INI_MAX_LINE (200) bytes per call: the rest of a longer line must not come
 * back as a line of its own. Here a commented-out setting would take effect. */
static void test_commented_out_long_line_does_not_apply(void **state)
{
        char text[512];
        int n = snprintf(text, sizeof(text), "[rigd]\n#");
        memset(text + n, ' ', 198);
        snprintf(text + n + 198, sizeof(text) - (size_t)n - 198, "lease_group = wheel\nadmin_group = adm\n");
        const char *path = write_file("etc/rig/rigd.conf", text);
        struct rigd_config c;
        config_init_defaults(&c);
        char *log;
        int r = load_file_captured(&c, path, &log);
        free(log);
        assert_string_equal(c.lease_group, "render");
        assert_string_equal(c.admin_group, "adm");
        assert_true(r >= 0);
}

static void test_line_numbers_stay_right_after_a_long_line(void **state)
{
        char text[1024];
        int n = snprintf(text, sizeof(text), "[rigd]\n# ");
        memset(text + n, 'a', 500);
        snprintf(text + n + 500, sizeof(text) - (size_t)n - 500, "\nbogus line\n");
        const char *path = write_file("etc/rig/rigd.conf", text);
        struct rigd_config c;
        config_init_defaults(&c);
        char *log;
        load_file_captured(&c, path, &log);
        char want[600], shown[1024];
        snprintf(want, sizeof(want), "%s:3: 'bogus line'", path);
        bool is_found = strstr(log, want) != NULL;
        snprintf(shown, sizeof(shown), "%s", log);
        free(log);
        if (!is_found)
                fail_msg("expected a warning for %s:3, got:\n%s", path, shown);
}

/* A line the warning says is ignored must be ignored: here inih takes the indented line as the
 * continuation of the value above and hands it to the handler. */
static void test_line_warned_as_ignored_is_not_applied(void **state)
{
        const char *path = write_file("etc/rig/rigd.conf", "[rigd]\nlease_group = video\n  wheel\n");
        struct rigd_config c;
        config_init_defaults(&c);
        char *log;
        int r = load_file_captured(&c, path, &log);
        bool is_warned = strstr(log, ":3:") != NULL;
        free(log);
        if (is_warned || r > 0)
                assert_string_equal(c.lease_group, "video");
}

/* Editors on other systems start files with a UTF-8 byte order mark; inih skips it, so the line
 * applies and must not be reported as bad. */
static void test_utf8_bom_is_not_a_bad_line(void **state)
{
        const char *path = write_file("etc/rig/rigd.conf", "\xef\xbb\xbf[rigd]\nlease_group = video\n");
        struct rigd_config c;
        config_init_defaults(&c);
        char *log;
        int r = load_file_captured(&c, path, &log);
        char shown[512];
        snprintf(shown, sizeof(shown), "%s", log);
        free(log);
        if (r != 0)
                fail_msg("%d bad line(s): %s", r, shown);
        assert_string_equal(c.lease_group, "video");
}

#define root_test(f) cmocka_unit_test_setup_teardown(f, setup_root, teardown_root)

int main(void)
{
        const struct CMUnitTest tests[] = {
                root_test(test_defaults_are_render_and_rig_admin),
                root_test(test_good_file_sets_both_groups),
                root_test(test_later_value_in_one_file_wins),
                root_test(test_conf_d_files_override_in_name_order),
                root_test(test_config_load_starts_from_the_defaults),
                root_test(test_each_bad_line_is_counted_and_the_rest_applies),
                root_test(test_warning_names_file_and_line),
                root_test(test_missing_file_is_enoent_and_silent),
                root_test(test_explicit_config_must_exist_and_is_the_only_file_read),
                root_test(test_commented_out_long_line_does_not_apply),
                root_test(test_line_numbers_stay_right_after_a_long_line),
                root_test(test_line_warned_as_ignored_is_not_applied),
                root_test(test_utf8_bom_is_not_a_bad_line),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
