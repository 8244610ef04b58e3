/* synth.c: the task-independent half of the generated problems: seeding of problem i, the
 * content-hash split into train and held-out, DeepSeek's chat rendering and the JSONL form.
 * The tasks themselves are synth_arith.c and synth_countdown.c; the checkers check.c. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/rng.h"
#include "data/data.h"
#include "data/synth_internal.h"

#define MAX_ATTEMPTS 100000 /* a held-out problem takes 100 attempts on average */

static const char BOS[] = "<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>";
static const char EOS[] = "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>";
static const char USER[] = "<\xef\xbd\x9cUser\xef\xbd\x9c>";
static const char ASSISTANT[] = "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>";

void dsc_synth_default_options(dsc_synth_options *o) {
    o->max_digits = 6;
    o->min_numbers = 3;
    o->max_numbers = 6;
    o->max_number = 100;
    o->max_target = 999;
    o->min_steps = 2;
}

static int check_options(const dsc_synth_options *o) {
    if (o->max_digits < 1 || o->max_digits > 18)
        return dsc_set_error("synth options: max_digits: expected 1..18, found %d", o->max_digits);
    if (o->min_numbers < 2 || o->max_numbers > DSC_COUNTDOWN_MAX_NUMBERS || o->min_numbers > o->max_numbers)
        return dsc_set_error("synth options: numbers: expected 2 <= min_numbers <= max_numbers <= %d, found %d..%d",
                             DSC_COUNTDOWN_MAX_NUMBERS, o->min_numbers, o->max_numbers);
    if (o->max_number < 2 || o->max_number > 10000)
        return dsc_set_error("synth options: max_number: expected 2..10000, found %d", o->max_number);
    if (o->max_target < 10 || o->max_target > 1000000)
        return dsc_set_error("synth options: max_target: expected 10..1000000, found %d", o->max_target);
    if (o->min_steps < 1 || o->min_steps > o->min_numbers - 1)
        return dsc_set_error("synth options: min_steps: expected 1..min_numbers-1 = %d, found %d", o->min_numbers - 1,
                             o->min_steps);
    return DSC_OK;
}

const char *dsc_task_name(dsc_task t) { return t == DSC_TASK_ARITHMETIC ? "arithmetic" : "countdown"; }

dsc_status dsc_task_parse(const char *name, dsc_task *out) {
    if (!strcmp(name, "arithmetic")) *out = DSC_TASK_ARITHMETIC;
    else if (!strcmp(name, "countdown")) *out = DSC_TASK_COUNTDOWN;
    else return dsc_set_error("task: expected \"arithmetic\" or \"countdown\", found \"%s\"", name);
    return DSC_OK;
}

dsc_status dsc_synth_generate(dsc_task task, dsc_split split, uint64_t seed, uint64_t index,
                              const dsc_synth_options *opt, dsc_problem *out) {
    dsc_synth_options def;
    if (!opt) {
        dsc_synth_default_options(&def);
        opt = &def;
    }
    if (check_options(opt)) return DSC_ERR;
    if (task != DSC_TASK_ARITHMETIC && task != DSC_TASK_COUNTDOWN) return dsc_set_error("synth: unknown task %d", (int)task);
    for (uint64_t attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        /* each (seed, task, index, attempt) has its own random stream */
        uint64_t h = dsc_hash64(dsc_hash64(dsc_hash64(dsc_hash64(seed) ^ (uint64_t)task) ^ index) ^ attempt);
        dsc_rng r;
        dsc_rng_seed(&r, h);
        int rc = task == DSC_TASK_ARITHMETIC ? synth_arithmetic_draw(&r, opt, split, out)
                                             : synth_countdown_draw(&r, opt, split, out);
        if (rc < 0) return DSC_ERR;
        if (rc > 0) return DSC_OK;
    }
    return dsc_set_error("synth: no %s problem for index %llu after %d attempts", dsc_task_name(task),
                         (unsigned long long)index, MAX_ATTEMPTS);
}

uint64_t dsc_synth_content_hash(const dsc_problem *p) {
    char buf[700];
    sbuf b;
    sb_init(&b, buf, sizeof buf);
    if (p->task == DSC_TASK_ARITHMETIC) {
        sb_printf(&b, "arithmetic:%s", p->prompt);
    } else {
        int64_t v[DSC_COUNTDOWN_MAX_NUMBERS];
        int n = p->n_numbers < 0 ? 0 : p->n_numbers > DSC_COUNTDOWN_MAX_NUMBERS ? DSC_COUNTDOWN_MAX_NUMBERS : p->n_numbers;
        memcpy(v, p->numbers, sizeof(int64_t) * (size_t)n);
        for (int i = 1; i < n; i++) /* insertion sort: the order of the numbers does not matter */
            for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
                int64_t t = v[j];
                v[j] = v[j - 1];
                v[j - 1] = t;
            }
        sb_printf(&b, "countdown:");
        for (int i = 0; i < n; i++) sb_printf(&b, i ? ",%lld" : "%lld", (long long)v[i]);
        sb_printf(&b, ":%lld", (long long)p->target);
    }
    return dsc_fnv1a64(DSC_FNV_OFFSET, buf, b.len);
}

bool dsc_synth_is_heldout(const dsc_problem *p) { return dsc_synth_content_hash(p) % DSC_SYNTH_HELDOUT_MOD == 0; }

size_t dsc_chat_render(const char *prompt, const char *reasoning, const char *answer, char *buf, size_t cap) {
    char dummy[1];
    if (!buf || !cap) {
        buf = dummy;
        cap = 1;
    }
    int n;
    if (reasoning && reasoning[0])
        n = snprintf(buf, cap, "%s%s%s%s<think>\n%s\n</think>\n%s%s", BOS, USER, prompt, ASSISTANT, reasoning, answer, EOS);
    else
        n = snprintf(buf, cap, "%s%s%s%s%s%s", BOS, USER, prompt, ASSISTANT, answer, EOS);
    return n < 0 ? 0 : (size_t)n;
}

size_t dsc_synth_render(const dsc_problem *p, char *buf, size_t cap) {
    return dsc_chat_render(p->prompt, p->reasoning, p->answer, buf, cap);
}

size_t dsc_synth_render_prompt(const dsc_problem *p, char *buf, size_t cap) {
    char dummy[1];
    if (!buf || !cap) {
        buf = dummy;
        cap = 1;
    }
    int n = snprintf(buf, cap, "%s%s%s%s<think>\n", BOS, USER, p->prompt, ASSISTANT);
    return n < 0 ? 0 : (size_t)n;
}

dsc_status dsc_synth_to_json(const dsc_problem *p, char **line) {
    *line = NULL;
    json_t *o = json_object();
    if (!o) return dsc_set_error("synth: out of memory for JSON");
    json_object_set_new(o, "prompt", json_string(p->prompt));
    json_object_set_new(o, "answer", json_string(p->answer));
    json_object_set_new(o, "checker", json_string(dsc_task_name(p->task)));
    json_object_set_new(o, "reasoning", json_string(p->reasoning));
    if (p->task == DSC_TASK_COUNTDOWN) {
        json_t *a = json_array();
        for (int i = 0; i < p->n_numbers; i++) json_array_append_new(a, json_integer(p->numbers[i]));
        json_object_set_new(o, "numbers", a);
        json_object_set_new(o, "target", json_integer(p->target));
    }
    *line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
    json_decref(o);
    if (!*line) return dsc_set_error("synth: cannot serialise a problem (invalid UTF-8?)");
    return DSC_OK;
}

/* Copies string field `key` of o into dst[cap]; absent is fine unless required. */
static int get_string(json_t *o, const char *key, bool required, char *dst, size_t cap) {
    json_t *v = json_object_get(o, key);
    if (!v) {
        dst[0] = 0;
        return required ? dsc_set_error("field \"%s\": missing", key) : DSC_OK;
    }
    if (!json_is_string(v)) return dsc_set_error("field \"%s\": expected a string", key);
    if (json_string_length(v) >= cap)
        return dsc_set_error("field \"%s\": expected at most %zu bytes, found %zu", key, cap - 1, json_string_length(v));
    memcpy(dst, json_string_value(v), json_string_length(v) + 1);
    if (strlen(dst) != json_string_length(v)) return dsc_set_error("field \"%s\": contains a NUL character", key);
    return DSC_OK;
}

dsc_status dsc_synth_from_json(const char *line, dsc_problem *out) {
    memset(out, 0, sizeof *out);
    json_error_t err;
    json_t *o = json_loads(line, JSON_REJECT_DUPLICATES, &err);
    if (!o) return dsc_set_error("invalid JSON at column %d: %s", err.column, err.text);
    int rc = DSC_ERR;
    char checker[32];
    if (!json_is_object(o)) {
        dsc_set_error("expected a JSON object");
        goto done;
    }
    if (get_string(o, "checker", true, checker, sizeof checker)) goto done;
    if (dsc_task_parse(checker, &out->task)) {
        dsc_set_error("field \"checker\": expected \"arithmetic\" or \"countdown\", found \"%s\"", checker);
        goto done;
    }
    if (get_string(o, "prompt", true, out->prompt, sizeof out->prompt) ||
        get_string(o, "answer", true, out->answer, sizeof out->answer) ||
        get_string(o, "reasoning", false, out->reasoning, sizeof out->reasoning))
        goto done;
    if (out->task == DSC_TASK_COUNTDOWN) {
        json_t *a = json_object_get(o, "numbers"), *t = json_object_get(o, "target");
        if (!json_is_array(a) || json_array_size(a) < 1 || json_array_size(a) > DSC_COUNTDOWN_MAX_NUMBERS) {
            dsc_set_error("field \"numbers\": expected an array of 1..%d integers", DSC_COUNTDOWN_MAX_NUMBERS);
            goto done;
        }
        out->n_numbers = (int)json_array_size(a);
        for (int i = 0; i < out->n_numbers; i++) {
            json_t *v = json_array_get(a, (size_t)i);
            if (!json_is_integer(v) || json_integer_value(v) < 0) {
                dsc_set_error("field \"numbers\"[%d]: expected a non-negative integer", i);
                goto done;
            }
            out->numbers[i] = json_integer_value(v);
        }
        if (!json_is_integer(t)) {
            dsc_set_error("field \"target\": expected an integer");
            goto done;
        }
        out->target = json_integer_value(t);
    }
    rc = DSC_OK;
done:
    json_decref(o);
    return rc;
}
