/* tasks.c: task sources and rule-based rewards (tasks.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "train/tasks.h"

static const char EOS[] = "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>";

dsc_status task_source_builtin(task_source *s, dsc_task task, const dsc_synth_options *opt, uint64_t seed) {
    memset(s, 0, sizeof *s);
    s->builtin = true;
    s->task = task;
    if (opt) s->synth = *opt;
    else dsc_synth_default_options(&s->synth);
    s->seed = seed;
    dsc_problem probe; /* validates the options now rather than at the first step */
    return dsc_synth_generate(task, DSC_SPLIT_TRAIN, seed, 0, &s->synth, &probe);
}

dsc_status task_source_jsonl(task_source *s, const char *path) {
    memset(s, 0, sizeof *s);
    FILE *f = fopen(path, "r");
    if (!f) return dsc_set_error("%s: cannot open: %s", path, strerror(errno));
    dsc_problem *probe = malloc(sizeof *probe);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int lineno = 0, n = 0, ncap = 0;
    dsc_status rc = probe ? DSC_OK : dsc_set_error("%s: out of memory", path);
    while (rc == DSC_OK && (len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (len == 0) continue;
        if (dsc_synth_from_json(line, probe)) {
            rc = dsc_set_error("%s:%d: %s", path, lineno, dsc_last_error());
            break;
        }
        if (n == ncap) {
            ncap = ncap ? 2 * ncap : 64;
            char **p = realloc(s->lines, sizeof *p * (size_t)ncap);
            if (!p) {
                rc = dsc_set_error("%s: out of memory at line %d", path, lineno);
                break;
            }
            s->lines = p;
        }
        if (!(s->lines[n] = strdup(line))) {
            rc = dsc_set_error("%s: out of memory at line %d", path, lineno);
            break;
        }
        s->n_items = ++n;
    }
    free(line);
    free(probe);
    fclose(f);
    if (rc == DSC_OK && n == 0) rc = dsc_set_error("%s: no problems (expected JSONL lines)", path);
    if (rc) task_source_free(s);
    return rc;
}

void task_source_free(task_source *s) {
    for (int i = 0; s->lines && i < s->n_items; i++) free(s->lines[i]);
    free(s->lines);
    memset(s, 0, sizeof *s);
}

dsc_status task_source_get(const task_source *s, dsc_split split, uint64_t index, dsc_problem *out) {
    if (s->builtin) return dsc_synth_generate(s->task, split, s->seed, index, &s->synth, out);
    if (s->n_items <= 0) return dsc_set_error("task source: no problems");
    return dsc_synth_from_json(s->lines[index % (uint64_t)s->n_items], out);
}

const char *task_source_name(const task_source *s) { return s->builtin ? dsc_task_name(s->task) : "jsonl"; }

void reward_default_options(reward_options *o) {
    o->accuracy = 1.0f;
    o->format = 0.1f;
}

static bool blank(const char *a, const char *b) {
    for (; a < b; a++)
        if (*a != ' ' && *a != '\n' && *a != '\t' && *a != '\r') return false;
    return true;
}

static const char *find_in(const char *a, const char *b, const char *needle) {
    size_t n = strlen(needle);
    for (; a + n <= b; a++)
        if (!memcmp(a, needle, n)) return a;
    return NULL;
}

dsc_status reward_score(const reward_options *o, const dsc_problem *p, const char *completion, bool finished,
                        reward_result *out) {
    memset(out, 0, sizeof *out);
    out->finished = finished;
    const char *a = completion, *b = completion + strlen(completion);
    size_t ne = strlen(EOS);
    if (finished && (size_t)(b - a) >= ne && !memcmp(b - ne, EOS, ne)) b -= ne;
    /* format: reasoning </think> answer, with one closing tag and no new opening one */
    const char *close = find_in(a, b, "</think>");
    if (finished && close && !find_in(close + 8, b, "</think>") && !find_in(a, b, "<think>") && !blank(a, close) &&
        !blank(close + 8, b))
        out->formatted = true;
    if (finished && close) { /* the prompt opened <think>: an answer comes only after it is closed */
        dsc_check_result cr;
        if (dsc_synth_check(p, completion, &cr)) return DSC_ERR;
        out->correct = cr.correct;
    }
    out->reward = (out->correct ? o->accuracy : 0.0f) + (out->formatted ? o->format : 0.0f);
    return DSC_OK;
}
