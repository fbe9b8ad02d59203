/* Unit tests of rigd's wire protocol: every request parses, every way a request can be wrong is
 * refused with a message that names the problem, replies and events are single lines that parse
 * back, and the line reader splits a byte stream the way DESIGN §4.3 says. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto.h"

/* every cmocka test takes a state it rarely needs (CMake builds with -Wno-unused-parameter) */
#pragma GCC diagnostic ignored "-Wunused-parameter"

/* ---- helpers ---- */

static int parse(const char *line, struct proto_request *r, char *err, size_t err_size)
{
        err[0] = '\0';
        return proto_parse_request(line, strlen(line), r, err, err_size);
}

/* Parses line, which must be accepted; the caller clears r. */
static void parse_ok(const char *line, struct proto_request *r)
{
        char err[512];
        int rc = parse(line, r, err, sizeof(err));
        if (rc != 0)
                fail_msg("%s: refused (%d): %s", line, rc, err);
}

/* line[0, len) must be refused with -EINVAL and a message containing each of the NULL-ended words. */
static void assert_refused_len(const char *line, size_t len, ...)
{
        struct proto_request r;
        char err[512] = "";
        int rc = proto_parse_request(line, len, &r, err, sizeof(err));
        proto_request_clear(&r);
        if (rc != -EINVAL)
                fail_msg("%.200s: expected -EINVAL, got %d", line, rc);
        va_list ap;
        va_start(ap, len);
        for (const char *word; (word = va_arg(ap, const char *));)
                if (!strstr(err, word))
                        fail_msg("%.200s: the message '%s' does not say '%s'", line, err, word);
        va_end(ap);
}

#define assert_refused(line, ...) assert_refused_len((line), strlen(line), __VA_ARGS__, (const char *)NULL)

/* A formatted reply or event: one line, its only newline at the end, parsing back to an object. */
static struct json_object *parse_back(char *line)
{
        assert_non_null(line);
        size_t len = strlen(line);
        assert_true(len >= 2);
        assert_int_equal(line[len - 1], '\n');
        assert_ptr_equal(strchr(line, '\n'), line + len - 1);
        struct json_tokener *tok = json_tokener_new();
        struct json_object *o = json_tokener_parse_ex(tok, line, (int)(len - 1));
        assert_int_equal(json_tokener_get_error(tok), json_tokener_success);
        assert_int_equal(json_tokener_get_parse_end(tok), len - 1);
        json_tokener_free(tok);
        assert_true(json_object_is_type(o, json_type_object));
        free(line);
        return o;
}

static struct json_object *field(struct json_object *o, const char *key)
{
        struct json_object *v = NULL;
        if (!json_object_object_get_ex(o, key, &v))
                fail_msg("no field '%s' in %s", key, json_object_to_json_string(o));
        return v;
}

/* ---- requests ---- */

static void test_every_request_kind_parses(void **state)
{
        static const struct {
                const char *line;
                enum proto_request_kind kind;
        } cases[] = {
                { "{\"id\":1,\"request\":\"hello\"}", PROTO_HELLO },
                { "{\"id\":1,\"request\":\"list\"}", PROTO_LIST },
                { "{\"id\":1,\"request\":\"topo\"}", PROTO_TOPO },
                { "{\"id\":1,\"request\":\"lease\"}", PROTO_LEASE },
                { "{\"id\":1,\"request\":\"release\",\"lease\":\"lease-1\"}", PROTO_RELEASE },
                { "{\"id\":1,\"request\":\"leases\"}", PROTO_LEASES },
                { "{\"id\":1,\"request\":\"subscribe\",\"events\":[\"hotplug\"]}", PROTO_SUBSCRIBE },
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct proto_request r;
                parse_ok(cases[i].line, &r);
                assert_int_equal(r.kind, cases[i].kind);
                assert_string_equal(proto_request_name(r.kind), proto_request_name(cases[i].kind));
                proto_request_clear(&r);
        }
        assert_string_equal(proto_request_name(PROTO_SUBSCRIBE), "subscribe");
        assert_string_equal(proto_request_name((enum proto_request_kind)99), "?");
}

static void test_lease_without_fields_is_one_exclusive_gpu_answered_at_once(void **state)
{
        struct proto_request r;
        parse_ok("{\"request\":\"lease\"}", &r);
        assert_null(r.id);
        assert_int_equal(r.lease.count, 1);
        assert_int_equal(r.lease.n_gpus, 0);
        assert_true(r.lease.is_exclusive);
        assert_int_equal(r.lease.wait_ms, 0);
        assert_int_equal(r.lease.min_vram_bytes, 0);
        assert_string_equal(r.lease.holder, "");
        proto_request_clear(&r);
}

static void test_lease_with_every_field_keeps_every_value(void **state)
{
        struct proto_request r;
        parse_ok("{\"id\":\"a\",\"request\":\"lease\",\"count\":3,\"gpus\":[0,\"0000:03:00.0\",\"GPU-8c2f\"],"
                 "\"min_vram_bytes\":17179869184,\"exclusive\":false,\"wait_ms\":3600000,\"holder\":\"llama-server\"}",
                 &r);
        assert_int_equal(r.kind, PROTO_LEASE);
        assert_int_equal(r.lease.count, 3);
        assert_int_equal(r.lease.n_gpus, 3);
        assert_string_equal(r.lease.gpus[0], "0");
        assert_string_equal(r.lease.gpus[1], "0000:03:00.0");
        assert_string_equal(r.lease.gpus[2], "GPU-8c2f");
        assert_int_equal(r.lease.min_vram_bytes, 17179869184ull);
        assert_false(r.lease.is_exclusive);
        assert_int_equal(r.lease.wait_ms, PROTO_MAX_WAIT_MS);
        assert_string_equal(r.lease.holder, "llama-server");
        proto_request_clear(&r);
}

static void test_named_gpus_give_the_count(void **state)
{
        struct proto_request r;
        parse_ok("{\"request\":\"lease\",\"gpus\":[1,2]}", &r);
        assert_int_equal(r.lease.count, 2);
        assert_int_equal(r.lease.n_gpus, 2);
        assert_string_equal(r.lease.gpus[1], "2");
        proto_request_clear(&r);
}

static void test_power_and_fault_requests_carry_their_arguments(void **state)
{
        struct proto_request r;
        parse_ok("{\"request\":\"power_set\",\"gpu\":\"0000:03:00.0\",\"watts\":187.5}", &r);
        assert_int_equal(r.kind, PROTO_POWER_SET);
        assert_string_equal(r.gpu, "0000:03:00.0");
        assert_true(r.watts == 187.5);
        proto_request_clear(&r);

        parse_ok("{\"request\":\"power_get\",\"gpu\":2}", &r);
        assert_int_equal(r.kind, PROTO_POWER_GET);
        assert_string_equal(r.gpu, "2");
        proto_request_clear(&r);

        parse_ok("{\"request\":\"power_get\"}", &r);
        assert_string_equal(r.gpu, "");         /* every GPU */
        proto_request_clear(&r);

        parse_ok("{\"request\":\"faults\"}", &r);
        assert_int_equal(r.kind, PROTO_FAULTS);
        proto_request_clear(&r);

        parse_ok("{\"request\":\"subscribe\",\"events\":[\"fault\",\"health\",\"power\"]}", &r);
        assert_int_equal(r.events, PROTO_EVENT_FAULT | PROTO_EVENT_HEALTH | PROTO_EVENT_POWER);
        proto_request_clear(&r);

        assert_refused("{\"request\":\"power_set\",\"watts\":190}", "needs \"gpu\"");
        assert_refused("{\"request\":\"power_set\",\"gpu\":0}", "needs \"watts\"");
        assert_refused("{\"request\":\"power_set\",\"gpu\":0,\"watts\":\"190\"}", "needs \"watts\"");
        assert_refused("{\"request\":\"power_set\",\"gpu\":0,\"watts\":-5}", "between 0 and 100000");
        assert_refused("{\"request\":\"power_get\",\"watts\":5}", "unknown field 'watts'");
        assert_refused("{\"request\":\"faults\",\"follow\":true}", "unknown field 'follow'");
}

static void test_release_and_subscribe_carry_their_arguments(void **state)
{
        struct proto_request r;
        parse_ok("{\"request\":\"release\",\"lease\":\"lease-17\"}", &r);
        assert_string_equal(r.lease_id, "lease-17");
        proto_request_clear(&r);

        parse_ok("{\"request\":\"subscribe\",\"events\":[\"lease_revoked\",\"hotplug\",\"lease\"]}", &r);
        assert_int_equal(r.events, PROTO_EVENT_LEASE_REVOKED | PROTO_EVENT_HOTPLUG | PROTO_EVENT_LEASE);
        proto_request_clear(&r);

        parse_ok("{\"request\":\"subscribe\",\"events\":[\"hotplug\"]}", &r);
        assert_int_equal(r.events, PROTO_EVENT_HOTPLUG);
        proto_request_clear(&r);
}

static void test_request_may_have_surrounding_blanks_and_crlf(void **state)
{
        struct proto_request r;
        parse_ok(" \t{\"id\":5,\"request\":\"hello\"} \t\r", &r);
        assert_int_equal(r.kind, PROTO_HELLO);
        assert_int_equal(json_object_get_int64(r.id), 5);
        proto_request_clear(&r);
}

/* ---- ids ---- */

static void test_integer_and_string_ids_are_echoed(void **state)
{
        static const char *const lines[] = {
                "{\"id\":42,\"request\":\"hello\"}",
                "{\"id\":-7,\"request\":\"hello\"}",
                "{\"id\":9223372036854775807,\"request\":\"hello\"}",
                "{\"id\":\"req-1 \\\"quoted\\\" \\u00e9\",\"request\":\"hello\"}",
                "{\"id\":\"\",\"request\":\"hello\"}",
        };
        for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
                struct json_object *sent = json_tokener_parse(lines[i]);
                assert_non_null(sent);
                struct proto_request r;
                parse_ok(lines[i], &r);
                assert_non_null(r.id);
                assert_true(json_object_equal(r.id, field(sent, "id")));

                struct json_object *reply = parse_back(proto_format_result(r.id, NULL));
                assert_true(json_object_equal(field(reply, "id"), field(sent, "id")));
                assert_true(json_object_is_type(field(reply, "result"), json_type_object));
                json_object_put(reply);

                reply = parse_back(proto_format_error(r.id, "EBUSY", "taken"));
                assert_true(json_object_equal(field(reply, "id"), field(sent, "id")));
                json_object_put(reply);

                proto_request_clear(&r);
                json_object_put(sent);
        }
}

static void test_request_without_id_is_answered_with_null_id(void **state)
{
        struct proto_request r;
        parse_ok("{\"request\":\"list\"}", &r);
        assert_null(r.id);
        struct json_object *reply = parse_back(proto_format_result(r.id, json_object_new_array()));
        assert_true(json_object_is_type(field(reply, "id"), json_type_null));
        assert_true(json_object_is_type(field(reply, "result"), json_type_array));
        json_object_put(reply);
        proto_request_clear(&r);
}

static void test_refused_request_keeps_its_id_for_the_error_reply(void **state)
{
        struct proto_request r;
        char err[256];
        assert_int_equal(parse("{\"id\":7,\"request\":\"nope\"}", &r, err, sizeof(err)), -EINVAL);
        assert_non_null(r.id);
        assert_int_equal(json_object_get_int64(r.id), 7);
        proto_request_clear(&r);

        assert_int_equal(parse("{\"id\":\"x\",\"request\":\"lease\",\"count\":0}", &r, err, sizeof(err)), -EINVAL);
        assert_non_null(r.id);
        assert_string_equal(json_object_get_string(r.id), "x");
        struct json_object *reply = parse_back(proto_format_error(r.id, "EINVAL", "%s", err));
        assert_string_equal(json_object_get_string(field(reply, "id")), "x");
        assert_string_equal(json_object_get_string(field(field(reply, "error"), "message")), err);
        json_object_put(reply);
        proto_request_clear(&r);
}

static void test_id_that_is_not_an_integer_or_string_is_refused(void **state)
{
        assert_refused("{\"id\":[1],\"request\":\"hello\"}", "'id'");
        assert_refused("{\"id\":{},\"request\":\"hello\"}", "'id'");
        assert_refused("{\"id\":1.5,\"request\":\"hello\"}", "'id'");
        assert_refused("{\"id\":true,\"request\":\"hello\"}", "'id'");
        assert_refused("{\"id\":null,\"request\":\"hello\"}", "'id'");
}

/* A client matches replies by id: an id that is accepted must come back as it was sent, byte for
 * byte. Refusing such ids would do as well. */
static void test_accepted_id_is_echoed_exactly(void **state)
{
        static const struct {
                const char *line;
                const char *id_json;    /* the id as it must appear in the reply */
        } cases[] = {
                { "{\"id\":\"a\\u0000b\",\"request\":\"hello\"}", "\"a\\u0000b\"" },
                { "{\"id\":18446744073709551615,\"request\":\"hello\"}", "18446744073709551615" },
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct proto_request r;
                char err[256];
                int rc = parse(cases[i].line, &r, err, sizeof(err));
                char reply[256] = "";
                if (rc == 0) {
                        char *line = proto_format_result(r.id, NULL);
                        snprintf(reply, sizeof(reply), "%s", line ? line : "(null)");
                        free(line);
                }
                proto_request_clear(&r);
                if (rc == 0) {
                        char want[128];
                        snprintf(want, sizeof(want), "\"id\":%s", cases[i].id_json);
                        if (!strstr(reply, want))
                                fail_msg("%s was answered with %s", cases[i].line, reply);
                } else {
                        assert_int_equal(rc, -EINVAL);
                        assert_non_null(strstr(err, "'id'"));
                }
        }
}

/* ---- refusals ---- */

static void test_fields_of_the_wrong_type_are_refused_by_name(void **state)
{
        assert_refused("{\"request\":\"lease\",\"count\":\"2\"}", "'count'", "integer");
        assert_refused("{\"request\":\"lease\",\"count\":2.0}", "'count'", "integer");
        assert_refused("{\"request\":\"lease\",\"wait_ms\":\"5\"}", "'wait_ms'", "integer");
        assert_refused("{\"request\":\"lease\",\"min_vram_bytes\":true}", "'min_vram_bytes'", "integer");
        assert_refused("{\"request\":\"lease\",\"exclusive\":1}", "'exclusive'", "true or false");
        assert_refused("{\"request\":\"lease\",\"holder\":5}", "'holder'", "string");
        assert_refused("{\"request\":\"lease\",\"gpus\":\"0\"}", "'gpus'", "array");
        assert_refused("{\"request\":\"lease\",\"gpus\":[1.5]}", "'gpus'");
        assert_refused("{\"request\":\"lease\",\"gpus\":[null]}", "'gpus'");
        assert_refused("{\"request\":\"release\",\"lease\":1}", "'lease'", "string");
        assert_refused("{\"request\":\"subscribe\",\"events\":\"hotplug\"}", "'events'", "array");
        assert_refused("{\"request\":5}", "\"request\"");
        assert_refused("{\"id\":1}", "missing \"request\"");
}

static void test_numbers_out_of_range_are_refused_with_the_range(void **state)
{
        assert_refused("{\"request\":\"lease\",\"count\":0}", "'count'", "between 1 and 64");
        assert_refused("{\"request\":\"lease\",\"count\":65}", "'count'", "between 1 and 64");
        assert_refused("{\"request\":\"lease\",\"count\":-1}", "'count'");
        assert_refused("{\"request\":\"lease\",\"count\":99999999999999999999}", "'count'");
        assert_refused("{\"request\":\"lease\",\"wait_ms\":-1}", "'wait_ms'", "between 0 and 3600000");
        assert_refused("{\"request\":\"lease\",\"wait_ms\":3600001}", "'wait_ms'", "between 0 and 3600000");
        assert_refused("{\"request\":\"lease\",\"min_vram_bytes\":-1}", "'min_vram_bytes'");
        assert_refused("{\"request\":\"lease\",\"gpus\":[-1]}", "GPU index -1");
        assert_refused("{\"request\":\"lease\",\"gpus\":[100000]}", "GPU index 100000");

        /* the edges themselves are accepted */
        struct proto_request r;
        parse_ok("{\"request\":\"lease\",\"count\":64,\"wait_ms\":0,\"min_vram_bytes\":0}", &r);
        assert_int_equal(r.lease.count, 64);
        proto_request_clear(&r);
        parse_ok("{\"request\":\"lease\",\"gpus\":[99999]}", &r);
        assert_string_equal(r.lease.gpus[0], "99999");
        proto_request_clear(&r);
}

static void test_unknown_field_is_named_in_the_refusal(void **state)
{
        assert_refused("{\"request\":\"lease\",\"cuont\":2}", "unknown field 'cuont'");
        assert_refused("{\"request\":\"hello\",\"verbose\":true}", "unknown field 'verbose'");
        assert_refused("{\"request\":\"list\",\"count\":1}", "unknown field 'count'");
        assert_refused("{\"request\":\"release\",\"lease\":\"lease-1\",\"force\":true}", "unknown field 'force'");
        assert_refused("{\"request\":\"subscribe\",\"events\":[],\"gpus\":[0]}", "unknown field 'gpus'");
}

static void test_unknown_request_and_event_are_named(void **state)
{
        assert_refused("{\"request\":\"reboot\"}", "unknown request 'reboot'");
        assert_refused("{\"request\":\"\"}", "unknown request ''");
        assert_refused("{\"request\":\"subscribe\",\"events\":[\"hotplug\",\"fire\"]}", "unknown event 'fire'");
        assert_refused("{\"request\":\"subscribe\",\"events\":[1]}", "unknown event");
        assert_refused("{\"request\":\"subscribe\"}", "'events'");
}

static void test_gpu_list_rules_are_enforced(void **state)
{
        assert_refused("{\"request\":\"lease\",\"gpus\":[0,0]}", "'0' is named twice");
        assert_refused("{\"request\":\"lease\",\"gpus\":[1,\"1\"]}", "'1' is named twice");
        assert_refused("{\"request\":\"lease\",\"gpus\":[\"0000:03:00.0\",1,\"0000:03:00.0\"]}",
                       "'0000:03:00.0' is named twice");
        assert_refused("{\"request\":\"lease\",\"gpus\":[0,1],\"count\":3}", "'count' is 3", "names 2");
        assert_refused("{\"request\":\"lease\",\"gpus\":[0],\"count\":2}", "'count' is 2", "names 1");
        assert_refused("{\"request\":\"lease\",\"gpus\":[]}", "'gpus'", "1 to 64");
        assert_refused("{\"request\":\"lease\",\"gpus\":[\"\"]}", "selector");

        char line[1024], *p = line;
        p += sprintf(p, "{\"request\":\"lease\",\"gpus\":[");
        for (int i = 0; i <= PROTO_MAX_GPUS; i++)
                p += sprintf(p, "%s%d", i ? "," : "", i);
        sprintf(p, "]}");
        assert_refused(line, "'gpus'", "1 to 64");

        /* exactly PROTO_MAX_GPUS is fine */
        p = line;
        p += sprintf(p, "{\"request\":\"lease\",\"gpus\":[");
        for (int i = 0; i < PROTO_MAX_GPUS; i++)
                p += sprintf(p, "%s%d", i ? "," : "", i);
        sprintf(p, "]}");
        struct proto_request r;
        parse_ok(line, &r);
        assert_int_equal(r.lease.n_gpus, PROTO_MAX_GPUS);
        assert_int_equal(r.lease.count, PROTO_MAX_GPUS);
        assert_string_equal(r.lease.gpus[PROTO_MAX_GPUS - 1], "63");
        proto_request_clear(&r);
}

static void test_strings_longer_than_their_field_are_refused(void **state)
{
        char line[1024], text[256];
        struct proto_request r;

        memset(text, 'h', PROTO_HOLDER_LEN - 1);
        text[PROTO_HOLDER_LEN - 1] = '\0';
        snprintf(line, sizeof(line), "{\"request\":\"lease\",\"holder\":\"%s\"}", text);
        parse_ok(line, &r);
        assert_int_equal(strlen(r.lease.holder), PROTO_HOLDER_LEN - 1);
        proto_request_clear(&r);
        snprintf(line, sizeof(line), "{\"request\":\"lease\",\"holder\":\"%sh\"}", text);
        assert_refused(line, "'holder'", "at most 127 bytes");

        memset(text, 's', PROTO_SELECTOR_LEN - 1);
        text[PROTO_SELECTOR_LEN - 1] = '\0';
        snprintf(line, sizeof(line), "{\"request\":\"lease\",\"gpus\":[\"%s\"]}", text);
        parse_ok(line, &r);
        assert_int_equal(strlen(r.lease.gpus[0]), PROTO_SELECTOR_LEN - 1);
        proto_request_clear(&r);
        snprintf(line, sizeof(line), "{\"request\":\"lease\",\"gpus\":[\"%ss\"]}", text);
        assert_refused(line, "selector", "1 to 79 bytes");

        memset(text, 'l', PROTO_LEASE_ID_LEN);
        text[PROTO_LEASE_ID_LEN] = '\0';
        snprintf(line, sizeof(line), "{\"request\":\"release\",\"lease\":\"%s\"}", text);
        assert_refused(line, "'lease'", "at most 31 bytes");
        assert_refused("{\"request\":\"release\",\"lease\":\"\"}", "\"lease\" id");
        assert_refused("{\"request\":\"release\"}", "\"lease\" id");
}

static void test_nul_inside_strings_is_refused(void **state)
{
        assert_refused("{\"request\":\"lease\",\"holder\":\"a\\u0000b\"}", "'holder'", "NUL");
        assert_refused("{\"request\":\"lease\",\"gpus\":[\"0000:03\\u0000:00.0\"]}", "selector");
        assert_refused("{\"request\":\"release\",\"lease\":\"lease-1\\u0000x\"}", "'lease'", "NUL");
        assert_refused("{\"request\":\"hel\\u0000lo\"}", "unknown request");
        /* a raw NUL byte inside the line */
        static const char raw[] = "{\"request\":\"hel\0lo\"}";
        assert_refused_len(raw, sizeof(raw) - 1, "not valid JSON", (const char *)NULL);
}

static void test_trailing_garbage_is_refused(void **state)
{
        assert_refused("{\"request\":\"hello\"} x", "trailing data");
        assert_refused("{\"request\":\"hello\"}{\"request\":\"list\"}", "trailing data");
        assert_refused("{\"request\":\"hello\"}}", "trailing");
        static const char raw[] = "{\"request\":\"hello\"}\0junk";
        assert_refused_len(raw, sizeof(raw) - 1, "trailing data", (const char *)NULL);
}

static void test_broken_and_non_object_json_is_refused(void **state)
{
        assert_refused("", "not valid JSON");
        assert_refused("{\"request\":\"hello\"", "not valid JSON", "ends early");
        assert_refused("{\"request\":hello}", "not valid JSON");
        assert_refused("request=hello", "must be a JSON object");     /* not starting with { */
        assert_refused("[\"hello\"]", "must be a JSON object");
        assert_refused("\"hello\"", "must be a JSON object");
        assert_refused("[]", "must be a JSON object");
}

/* A bare scalar is complete, valid JSON: "ends early" would send the client looking for a
 * truncation that did not happen. */
static void test_scalar_json_is_refused_as_not_an_object(void **state)
{
        assert_refused("42", "must be a JSON object");
        assert_refused("true", "must be a JSON object");
        assert_refused("null", "must be a JSON object");
}

static void nested_request(char *line, size_t size, int depth)
{
        /* depth 1 is the request object itself; each further level is an array around "hello" */
        char *p = line;
        p += snprintf(p, size, "{\"request\":\"hello\",\"x\":");
        for (int i = 1; i < depth; i++)
                *p++ = '[';
        *p++ = '1';
        for (int i = 1; i < depth; i++)
                *p++ = ']';
        *p++ = '}';
        *p = '\0';
}

static void test_nesting_deeper_than_the_limit_is_refused(void **state)
{
        char line[256];
        nested_request(line, sizeof(line), PROTO_MAX_DEPTH + 1);
        assert_refused(line, "nesting");
        nested_request(line, sizeof(line), 100);
        assert_refused(line, "nesting");
        /* a shallow request gets past the tokenizer and is refused for its field instead */
        nested_request(line, sizeof(line), 3);
        assert_refused(line, "unknown field 'x'");
}

static void test_line_of_max_length_is_refused_and_one_shorter_accepted(void **state)
{
        char *line = malloc(PROTO_MAX_LINE + 1);
        assert_non_null(line);
        static const char req[] = "{\"request\":\"hello\"}";
        memset(line, ' ', PROTO_MAX_LINE);
        memcpy(line, req, strlen(req));
        line[PROTO_MAX_LINE] = '\0';

        assert_refused_len(line, PROTO_MAX_LINE, "longer than 65535 bytes", (const char *)NULL);
        assert_refused_len(line, PROTO_MAX_LINE + 1, "longer than", (const char *)NULL);

        struct proto_request r;
        char err[256] = "";
        assert_int_equal(proto_parse_request(line, PROTO_MAX_LINE - 1, &r, err, sizeof(err)), 0);
        assert_int_equal(r.kind, PROTO_HELLO);
        proto_request_clear(&r);
        free(line);
}

static void test_error_message_is_cut_to_the_buffer(void **state)
{
        struct proto_request r;
        char err[8];
        memset(err, 'x', sizeof(err));
        assert_int_equal(proto_parse_request("{\"request\":\"reboot\"}", 20, &r, err, sizeof(err)), -EINVAL);
        assert_int_equal(strnlen(err, sizeof(err)), sizeof(err) - 1);
        proto_request_clear(&r);
}

/* ---- replies and events ---- */

static void test_result_line_is_one_line_with_the_result(void **state)
{
        struct json_object *id = json_object_new_int(3);
        struct json_object *result = json_object_new_object();
        json_object_object_add(result, "lease", json_object_new_string("lease-1"));
        json_object_object_add(result, "note", json_object_new_string("two\nlines and a \"quote\""));
        struct json_object *reply = parse_back(proto_format_result(id, result));
        assert_int_equal(json_object_get_int(field(reply, "id")), 3);
        assert_string_equal(json_object_get_string(field(field(reply, "result"), "lease")), "lease-1");
        assert_string_equal(json_object_get_string(field(field(reply, "result"), "note")), "two\nlines and a \"quote\"");
        json_object_put(reply);
        /* the id is not consumed */
        assert_int_equal(json_object_get_int(id), 3);
        json_object_put(id);
}

static void test_error_line_carries_code_and_formatted_message(void **state)
{
        struct json_object *id = json_object_new_string("q");
        struct json_object *reply =
                parse_back(proto_format_error(id, proto_errno_name(-EBUSY), "GPU %s is held by %s\n(pid %d)",
                                              "0000:03:00.0", "lease-2", 42));
        struct json_object *e = field(reply, "error");
        assert_string_equal(json_object_get_string(field(reply, "id")), "q");
        assert_string_equal(json_object_get_string(field(e, "code")), "EBUSY");
        assert_string_equal(json_object_get_string(field(e, "message")), "GPU 0000:03:00.0 is held by lease-2\n(pid 42)");
        assert_int_equal(proto_errno_from_name(json_object_get_string(field(e, "code"))), -EBUSY);
        json_object_put(reply);
        json_object_put(id);

        /* a long message is cut, not overflowed, and the line still parses */
        char big[2048];
        memset(big, 'm', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        reply = parse_back(proto_format_error(NULL, "EIO", "%s", big));
        size_t len = strlen(json_object_get_string(field(field(reply, "error"), "message")));
        assert_true(len > 0 && len < sizeof(big) - 1);
        assert_true(json_object_is_type(field(reply, "id"), json_type_null));
        json_object_put(reply);
}

static void test_event_line_names_the_event_and_keeps_the_fields(void **state)
{
        struct json_object *fields = json_object_new_object();
        json_object_object_add(fields, "pci", json_object_new_string("0000:03:00.0"));
        json_object_object_add(fields, "lease", json_object_new_string("lease-9"));
        struct json_object *ev = parse_back(proto_format_event(PROTO_EVENT_LEASE_REVOKED, fields));
        assert_string_equal(json_object_get_string(field(ev, "event")), "lease_revoked");
        assert_string_equal(json_object_get_string(field(ev, "pci")), "0000:03:00.0");
        assert_string_equal(json_object_get_string(field(ev, "lease")), "lease-9");
        struct json_object *unused;
        assert_false(json_object_object_get_ex(ev, "id", &unused));
        json_object_put(ev);

        ev = parse_back(proto_format_event(PROTO_EVENT_HOTPLUG, NULL));
        assert_string_equal(json_object_get_string(field(ev, "event")), "hotplug");
        json_object_put(ev);
        ev = parse_back(proto_format_event(PROTO_EVENT_LEASE, NULL));
        assert_string_equal(json_object_get_string(field(ev, "event")), "lease");
        json_object_put(ev);
}

static void test_event_names_match_what_subscribe_accepts(void **state)
{
        static const enum proto_event_kind kinds[] = { PROTO_EVENT_LEASE_REVOKED, PROTO_EVENT_HOTPLUG, PROTO_EVENT_LEASE };
        for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
                char line[128];
                snprintf(line, sizeof(line), "{\"request\":\"subscribe\",\"events\":[\"%s\"]}", proto_event_name(kinds[i]));
                struct proto_request r;
                parse_ok(line, &r);
                assert_int_equal(r.events, kinds[i]);
                proto_request_clear(&r);
        }
        assert_string_equal(proto_event_name((enum proto_event_kind)(1u << 7)), "?");
}

static void test_errno_names_round_trip(void **state)
{
        static const int errs[] = { EPERM, EBUSY, EINVAL, ENODEV, ENOENT, ENOMEM, ETIMEDOUT, EMSGSIZE, EIO, ENOTSUP };
        for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
                const char *name = proto_errno_name(-errs[i]);
                assert_non_null(name);
                assert_int_equal(name[0], 'E');
                assert_int_equal(proto_errno_from_name(name), -errs[i]);
                for (size_t j = 0; j < i; j++)
                        assert_string_not_equal(proto_errno_name(-errs[j]), name);
        }
        assert_string_equal(proto_errno_name(-EBUSY), "EBUSY");
        assert_string_equal(proto_errno_name(-ENODEV), "ENODEV");
        /* unknown errnos travel as EIO; unknown names come back as 0 */
        assert_string_equal(proto_errno_name(-ECHILD), "EIO");
        assert_int_equal(proto_errno_from_name("ECHILD"), 0);
        assert_int_equal(proto_errno_from_name("ebusy"), 0);
        assert_int_equal(proto_errno_from_name(""), 0);
}

/* ---- the line reader ---- */

struct collected {
        char *lines[64];
        size_t lens[64];
        size_t n_lines;
        size_t n_too_long;
        size_t too_long_before[8];      /* how many lines had come before each -EMSGSIZE */
};

static void collected_free(struct collected *c)
{
        for (size_t i = 0; i < c->n_lines; i++)
                free(c->lines[i]);
        memset(c, 0, sizeof(*c));
}

static void drain(struct proto_reader *r, struct collected *c)
{
        for (;;) {
                char *line;
                size_t len;
                int rc = proto_reader_next(r, &line, &len);
                if (rc == 0)
                        return;
                if (rc == -EMSGSIZE) {
                        assert_true(c->n_too_long < 8);
                        c->too_long_before[c->n_too_long++] = c->n_lines;
                        continue;
                }
                assert_int_equal(rc, 1);
                assert_true(c->n_lines < 64);
                assert_int_equal(line[len], '\0');
                c->lines[c->n_lines] = malloc(len + 1);
                assert_non_null(c->lines[c->n_lines]);
                memcpy(c->lines[c->n_lines], line, len + 1);
                c->lens[c->n_lines++] = len;
        }
}

/* Feeds data as a socket would, at most chunk bytes per read, draining after each. */
static void pump(struct proto_reader *r, const char *data, size_t size, size_t chunk, struct collected *c)
{
        while (size > 0) {
                size_t space;
                char *buf = proto_reader_space(r, &space);
                assert_true(space > 0);
                size_t n = size < chunk ? size : chunk;
                n = n < space ? n : space;
                memcpy(buf, data, n);
                proto_reader_commit(r, n);
                data += n;
                size -= n;
                drain(r, c);
        }
}

static struct proto_reader *reader_new(void)
{
        struct proto_reader *r = calloc(1, sizeof(*r));
        assert_non_null(r);
        return r;
}

static void test_reader_joins_a_line_split_over_many_reads(void **state)
{
        static const char msg[] = "{\"id\":1,\"request\":\"hello\"}\n{\"id\":2,\"request\":\"list\"}\n";
        for (size_t chunk = 1; chunk <= 7; chunk++) {
                struct proto_reader *r = reader_new();
                struct collected c = { 0 };
                pump(r, msg, 20, chunk, &c);
                assert_int_equal(c.n_lines, 0);         /* no newline yet: nothing */
                pump(r, msg + 20, strlen(msg) - 20, chunk, &c);
                assert_int_equal(c.n_lines, 2);
                assert_string_equal(c.lines[0], "{\"id\":1,\"request\":\"hello\"}");
                assert_string_equal(c.lines[1], "{\"id\":2,\"request\":\"list\"}");
                assert_int_equal(c.n_too_long, 0);
                collected_free(&c);
                free(r);
        }
}

static void test_reader_splits_several_lines_in_one_read(void **state)
{
        static const char msg[] = "a\n\nbb\nccc\ndd";
        struct proto_reader *r = reader_new();
        struct collected c = { 0 };
        pump(r, msg, strlen(msg), sizeof(msg), &c);
        assert_int_equal(c.n_lines, 4);
        assert_string_equal(c.lines[0], "a");
        assert_string_equal(c.lines[1], "");
        assert_int_equal(c.lens[1], 0);
        assert_string_equal(c.lines[2], "bb");
        assert_string_equal(c.lines[3], "ccc");
        assert_int_equal(c.lens[3], 3);
        /* "dd" waits for its newline */
        pump(r, "d\n", 2, 2, &c);
        assert_int_equal(c.n_lines, 5);
        assert_string_equal(c.lines[4], "ddd");
        collected_free(&c);
        free(r);
}

static void test_reader_reports_an_overlong_line_once_and_keeps_the_next(void **state)
{
        size_t n_long = 3 * PROTO_MAX_LINE + 17;
        static const char after[] = "{\"request\":\"hello\"}\n";
        size_t size = 6 + n_long + 1 + strlen(after);
        char *data = malloc(size);
        assert_non_null(data);
        memcpy(data, "first\n", 6);
        memset(data + 6, 'x', n_long);
        data[6 + n_long] = '\n';
        memcpy(data + 6 + n_long + 1, after, strlen(after));

        static const size_t chunks[] = { 1000, 4096, PROTO_MAX_LINE, 7777 };
        for (size_t k = 0; k < sizeof(chunks) / sizeof(chunks[0]); k++) {
                struct proto_reader *r = reader_new();
                struct collected c = { 0 };
                pump(r, data, size, chunks[k], &c);
                assert_int_equal(c.n_too_long, 1);
                assert_int_equal(c.too_long_before[0], 1);      /* after "first", before the good line */
                assert_int_equal(c.n_lines, 2);
                assert_string_equal(c.lines[0], "first");
                assert_string_equal(c.lines[1], "{\"request\":\"hello\"}");
                collected_free(&c);
                free(r);
        }
        free(data);
}

static void test_reader_reports_a_line_of_max_length_as_overlong(void **state)
{
        /* PROTO_MAX_LINE bytes before the newline: one byte too many */
        size_t size = PROTO_MAX_LINE + 1 + 3;
        char *data = malloc(size);
        assert_non_null(data);
        memset(data, 'y', PROTO_MAX_LINE);
        memcpy(data + PROTO_MAX_LINE, "\nok\n", 4);
        struct proto_reader *r = reader_new();
        struct collected c = { 0 };
        pump(r, data, size, PROTO_MAX_LINE, &c);
        assert_int_equal(c.n_too_long, 1);
        assert_int_equal(c.n_lines, 1);
        assert_string_equal(c.lines[0], "ok");
        collected_free(&c);
        free(r);
        free(data);
}

static void test_reader_accepts_a_line_one_byte_under_the_limit(void **state)
{
        /* a short line first, so the long one has to be moved to the front of the buffer */
        size_t n = PROTO_MAX_LINE - 1;
        size_t size = 3 + n + 1 + 3;
        char *data = malloc(size);
        assert_non_null(data);
        memcpy(data, "ab\n", 3);
        memset(data + 3, 'z', n);
        memcpy(data + 3 + n, "\ncd\n", 4);

        static const size_t chunks[] = { 1, 4093, PROTO_MAX_LINE };
        for (size_t k = 0; k < sizeof(chunks) / sizeof(chunks[0]); k++) {
                struct proto_reader *r = reader_new();
                struct collected c = { 0 };
                pump(r, data, size, chunks[k], &c);
                assert_int_equal(c.n_too_long, 0);
                assert_int_equal(c.n_lines, 3);
                assert_string_equal(c.lines[0], "ab");
                assert_int_equal(c.lens[1], n);
                assert_int_equal(c.lines[1][0], 'z');
                assert_int_equal(c.lines[1][n - 1], 'z');
                assert_string_equal(c.lines[2], "cd");
                collected_free(&c);
                free(r);
        }
        free(data);
}

static void test_reader_lines_parse_as_requests(void **state)
{
        static const char msg[] = "{\"id\":1,\"request\":\"lease\",\"count\":2}\r\n{\"id\":2,\"request\":\"leases\"}\n";
        struct proto_reader *r = reader_new();
        struct collected c = { 0 };
        pump(r, msg, strlen(msg), 5, &c);
        assert_int_equal(c.n_lines, 2);
        struct proto_request req;
        char err[256];
        assert_int_equal(proto_parse_request(c.lines[0], c.lens[0], &req, err, sizeof(err)), 0);
        assert_int_equal(req.lease.count, 2);
        proto_request_clear(&req);
        assert_int_equal(proto_parse_request(c.lines[1], c.lens[1], &req, err, sizeof(err)), 0);
        assert_int_equal(req.kind, PROTO_LEASES);
        proto_request_clear(&req);
        collected_free(&c);
        free(r);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_every_request_kind_parses),
                cmocka_unit_test(test_lease_without_fields_is_one_exclusive_gpu_answered_at_once),
                cmocka_unit_test(test_lease_with_every_field_keeps_every_value),
                cmocka_unit_test(test_named_gpus_give_the_count),
                cmocka_unit_test(test_release_and_subscribe_carry_their_arguments),
                cmocka_unit_test(test_power_and_fault_requests_carry_their_arguments),
                cmocka_unit_test(test_request_may_have_surrounding_blanks_and_crlf),
                cmocka_unit_test(test_integer_and_string_ids_are_echoed),
                cmocka_unit_test(test_request_without_id_is_answered_with_null_id),
                cmocka_unit_test(test_refused_request_keeps_its_id_for_the_error_reply),
                cmocka_unit_test(test_id_that_is_not_an_integer_or_string_is_refused),
                cmocka_unit_test(test_accepted_id_is_echoed_exactly),
                cmocka_unit_test(test_fields_of_the_wrong_type_are_refused_by_name),
                cmocka_unit_test(test_numbers_out_of_range_are_refused_with_the_range),
                cmocka_unit_test(test_unknown_field_is_named_in_the_refusal),
                cmocka_unit_test(test_unknown_request_and_event_are_named),
                cmocka_unit_test(test_gpu_list_rules_are_enforced),
                cmocka_unit_test(test_strings_longer_than_their_field_are_refused),
                cmocka_unit_test(test_nul_inside_strings_is_refused),
                cmocka_unit_test(test_trailing_garbage_is_refused),
                cmocka_unit_test(test_broken_and_non_object_json_is_refused),
                cmocka_unit_test(test_scalar_json_is_refused_as_not_an_object),
                cmocka_unit_test(test_nesting_deeper_than_the_limit_is_refused),
                cmocka_unit_test(test_line_of_max_length_is_refused_and_one_shorter_accepted),
                cmocka_unit_test(test_error_message_is_cut_to_the_buffer),
                cmocka_unit_test(test_result_line_is_one_line_with_the_result),
                cmocka_unit_test(test_error_line_carries_code_and_formatted_message),
                cmocka_unit_test(test_event_line_names_the_event_and_keeps_the_fields),
                cmocka_unit_test(test_event_names_match_what_subscribe_accepts),
                cmocka_unit_test(test_errno_names_round_trip),
                cmocka_unit_test(test_reader_joins_a_line_split_over_many_reads),
                cmocka_unit_test(test_reader_splits_several_lines_in_one_read),
                cmocka_unit_test(test_reader_reports_an_overlong_line_once_and_keeps_the_next),
                cmocka_unit_test(test_reader_reports_a_line_of_max_length_as_overlong),
                cmocka_unit_test(test_reader_accepts_a_line_one_byte_under_the_limit),
                cmocka_unit_test(test_reader_lines_parse_as_requests),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
