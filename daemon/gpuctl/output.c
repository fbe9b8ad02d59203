/* output.c — printing JSON for people and scripts, and the aligned tables of the verbs. */
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "gpuctl.h"

const char *json_field_str(struct json_object *o, const char *key)
{
        struct json_object *v;
        return json_object_object_get_ex(o, key, &v) && v ? json_object_get_string(v) : NULL;
}

const char *json_field_str_or_dash(struct json_object *o, const char *key)
{
        const char *s = json_field_str(o, key);
        return s ? s : "-";
}

void json_print(struct json_object *obj)
{
        puts(json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
                                                 JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(obj);
}

void format_bytes(unsigned long long bytes, char *buf, size_t size)
{
        if (bytes == 0) {
                snprintf(buf, size, "-");
                return;
        }
        snprintf(buf, size, "%.1f GiB", (double)bytes / (1024.0 * 1024.0 * 1024.0));
}

int table_init(struct table *t, size_t n_cols, const char *const *header)
{
        memset(t, 0, sizeof(*t));
        if (n_cols > TABLE_MAX_COLS)
                return -1;
        t->n_cols = n_cols;
        return table_add_row(t, header);
}

int table_add_row(struct table *t, const char *const *cells)
{
        void *rows = realloc(t->cells, (t->n_rows + 1) * sizeof(*t->cells));
        if (!rows)
                return -1;
        t->cells = rows;
        for (size_t c = 0; c < t->n_cols; c++)
                snprintf(t->cells[t->n_rows][c], TABLE_CELL_LEN, "%s", cells[c] ? cells[c] : "");
        t->n_rows++;
        return 0;
}

/* Display width of UTF-8 text: count code points, not bytes ("°C"). */
static size_t text_width(const char *s)
{
        size_t n = 0;
        for (; *s; s++)
                n += ((unsigned char)*s & 0xc0) != 0x80;
        return n;
}

void table_print(const struct table *t)
{
        size_t width[TABLE_MAX_COLS] = { 0 };
        for (size_t r = 0; r < t->n_rows; r++)
                for (size_t c = 0; c < t->n_cols; c++)
                        if (text_width(t->cells[r][c]) > width[c])
                                width[c] = text_width(t->cells[r][c]);
        for (size_t r = 0; r < t->n_rows; r++) {
                for (size_t c = 0; c < t->n_cols; c++) {
                        const char *cell = t->cells[r][c];
                        bool is_last = c + 1 == t->n_cols;
                        fputs(cell, stdout);
                        if (!is_last)
                                printf("%*s", (int)(width[c] - text_width(cell) + 2), "");
                }
                putchar('\n');
        }
}

void table_free(struct table *t)
{
        free(t->cells);
        t->cells = NULL;
        t->n_rows = 0;
}
