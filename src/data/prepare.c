/* prepare.c: `dsc data prepare` as a library call: reads corpus text files (form-feed delimited
 * documents), JSONL ("text", or "prompt"/"answer"/"reasoning" rendered with the chat template)
 * and generated problems; tokenizes them in batches on several threads (output order fixed, so
 * the result does not depend on the thread count); splits by document into train.bin and val.bin;
 * writes meta.json last. Progress goes to a callback; nothing here prints. */
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/fileio.h"
#include "data/prepare.h"

#define BATCH_JOBS 4096
#define BATCH_BYTES (8u << 20)

enum { JOB_TEXT, JOB_CHAT, JOB_SYNTH };

/* One document to tokenize. */
typedef struct {
    int kind;
    const char *text;     /* TEXT/CHAT: the bytes to encode (CHAT: rendered, special tokens parsed) */
    size_t len;
    char *owned;          /* text we allocated (JSONL, rendered problems) */
    int split;            /* 0 train, 1 val */
    int source;
    dsc_task task;        /* SYNTH: problem `index` of (task, ssplit, sseed) */
    dsc_split ssplit;
    uint64_t sseed, index;
    uint64_t in_bytes;    /* input bytes this document accounts for (progress) */
    int32_t *ids;         /* filled by the workers, EOS appended */
    size_t n;
} job;

typedef struct {
    char name[256];
    const char *path;
    const char *kind;     /* "text" | "jsonl" | "synthetic" */
    uint64_t bytes, docs[2], tokens[2];
} source_stat;

typedef struct {
    const dsc_prepare_options *o;
    dsc_shard_writer *w[2];
    int32_t eos;
    job *jobs;
    int n_jobs;
    size_t batch_bytes;
    source_stat *src;
    int n_src;
    uint64_t bytes_done, bytes_total, tokens;
    double t0;
} prep;

static uint64_t mix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* 0 (train) or 1 (val) from a hash of the content and the seed. */
static int split_of(const prep *p, const void *data, size_t len) {
    if (p->o->val_fraction <= 0) return 0;
    uint64_t h = mix64(dsc_fnv1a64(DSC_FNV_OFFSET, data, len) ^ mix64(p->o->seed));
    return (double)(h >> 11) * 0x1.0p-53 < p->o->val_fraction;
}

void dsc_prepare_default_options(dsc_prepare_options *o) {
    memset(o, 0, sizeof *o);
    o->val_fraction = 0.01;
    o->seed = 1;
    o->synth_seed = 1;
    dsc_synth_default_options(&o->synth_opt);
}

/* Tokenizes one job (runs on a worker thread). */
static int encode_job(const prep *p, job *j) {
    static const size_t render_cap = 24576;
    if (j->kind == JOB_SYNTH) {
        dsc_problem *pr = malloc(sizeof *pr);
        j->owned = malloc(render_cap);
        if (!pr || !j->owned) {
            free(pr);
            return dsc_set_error("prepare: out of memory");
        }
        if (dsc_synth_generate(j->task, j->ssplit, j->sseed, j->index, &p->o->synth_opt, pr)) {
            free(pr);
            return DSC_ERR;
        }
        j->len = dsc_synth_render(pr, j->owned, render_cap);
        free(pr);
        if (j->len >= render_cap) return dsc_set_error("prepare: a rendered problem exceeds %zu bytes", render_cap);
        j->text = j->owned;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    if (dsc_tokenizer_encode(p->o->tok, j->text, j->len, j->kind != JOB_TEXT, &ids, &n)) return DSC_ERR;
    if (n == 0 || ids[n - 1] != p->eos) {
        int32_t *grown = realloc(ids, sizeof(int32_t) * (n + 1));
        if (!grown) {
            free(ids);
            return dsc_set_error("prepare: out of memory");
        }
        ids = grown;
        ids[n++] = p->eos;
    }
    j->ids = ids;
    j->n = n;
    return DSC_OK;
}

static void free_job(job *j) {
    free(j->ids);
    free(j->owned);
    memset(j, 0, sizeof *j);
}

/* Tokenizes the pending batch in parallel, then writes it in order. */
static int flush_batch(prep *p) {
    int n = p->n_jobs, failed = 0;
    char err[1024] = "";
    int threads = p->o->threads > 0 ? p->o->threads : omp_get_max_threads();
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int i = 0; i < n; i++) {
        int stop;
#pragma omp atomic read
        stop = failed;
        if (stop || encode_job(p, &p->jobs[i]) == DSC_OK) continue;
#pragma omp critical(dsc_prepare_error)
        {
            if (!failed) snprintf(err, sizeof err, "%s", dsc_last_error()); /* the thread's own message */
#pragma omp atomic write
            failed = 1;
        }
    }
    int rc = DSC_OK;
    if (failed) rc = dsc_set_error("%s", err);
    for (int i = 0; i < n; i++) {
        job *j = &p->jobs[i];
        if (rc == DSC_OK) {
            rc = dsc_shard_writer_add(p->w[j->split], j->ids, j->n);
            source_stat *s = &p->src[j->source];
            s->docs[j->split]++;
            s->tokens[j->split] += j->n;
            p->tokens += j->n;
            p->bytes_done += j->in_bytes;
        }
        free_job(j);
    }
    p->n_jobs = 0;
    p->batch_bytes = 0;
    if (rc == DSC_OK && p->o->progress && n) {
        dsc_prepare_progress pg = {p->src[p->n_src - 1].name, p->bytes_done, p->bytes_total, p->tokens,
                                   omp_get_wtime() - p->t0};
        p->o->progress(p->o->progress_ctx, &pg);
    }
    return rc;
}

static int add_job(prep *p, const job *j) {
    if (p->n_jobs == BATCH_JOBS || p->batch_bytes >= BATCH_BYTES)
        if (flush_batch(p)) return DSC_ERR;
    p->jobs[p->n_jobs++] = *j;
    p->batch_bytes += j->len;
    return DSC_OK;
}

static source_stat *new_source(prep *p, const char *name, const char *path, const char *kind) {
    source_stat *s = &p->src[p->n_src++];
    const char *base = strrchr(name, '/');
    snprintf(s->name, sizeof s->name, "%s", base ? base + 1 : name);
    s->path = path;
    s->kind = kind;
    return s;
}

/* A text file: its form-feed delimited documents. */
static int read_text(prep *p, const dsc_mapped_file *m) {
    const char *t = (const char *)m->data, *doc;
    size_t pos = 0, len, last = 0;
    while (dsc_next_document(t, m->size, &pos, &doc, &len)) {
        job j = {.kind = JOB_TEXT, .text = doc, .len = len, .source = p->n_src - 1, .in_bytes = pos - last};
        j.split = split_of(p, doc, len);
        last = pos;
        if (add_job(p, &j)) return DSC_ERR;
    }
    p->bytes_done += m->size - last;
    return DSC_OK;
}

/* A JSONL file: {"text": ...} or {"prompt": ..., "answer": ..., "reasoning": ...} per line. */
static int read_jsonl(prep *p, const dsc_mapped_file *m, const char *path) {
    const char *t = (const char *)m->data;
    size_t pos = 0;
    int line = 0;
    while (pos < m->size) {
        const char *nl = memchr(t + pos, '\n', m->size - pos);
        size_t end = nl ? (size_t)(nl - t) : m->size, next = nl ? end + 1 : m->size;
        line++;
        size_t b = pos;
        while (b < end && strchr(" \t\r", t[b])) b++;
        if (b == end) {
            p->bytes_done += next - pos;
            pos = next;
            continue;
        }
        json_error_t err;
        json_t *o = json_loadb(t + pos, end - pos, 0, &err);
        if (!o || !json_is_object(o)) {
            json_decref(o);
            return dsc_set_error("%s:%d: %s", path, line, o ? "expected a JSON object" : err.text);
        }
        job j = {.source = p->n_src - 1, .in_bytes = next - pos};
        j.split = split_of(p, t + pos, end - pos);
        json_t *text = json_object_get(o, "text"), *prompt = json_object_get(o, "prompt"),
               *answer = json_object_get(o, "answer"), *reasoning = json_object_get(o, "reasoning");
        int rc = DSC_OK;
        if (text) {
            if (!json_is_string(text)) rc = dsc_set_error("%s:%d: field \"text\": expected a string", path, line);
            else {
                j.kind = JOB_TEXT;
                j.len = json_string_length(text);
                j.owned = malloc(j.len + 1);
                if (j.owned) memcpy(j.owned, json_string_value(text), j.len + 1);
            }
        } else if (!json_is_string(prompt) || !json_is_string(answer) || (reasoning && !json_is_string(reasoning))) {
            rc = dsc_set_error("%s:%d: expected a string field \"text\", or string fields \"prompt\" and \"answer\" "
                               "(and optionally \"reasoning\")", path, line);
        } else {
            const char *r = reasoning ? json_string_value(reasoning) : NULL;
            j.kind = JOB_CHAT;
            j.len = dsc_chat_render(json_string_value(prompt), r, json_string_value(answer), NULL, 0);
            j.owned = malloc(j.len + 1);
            if (j.owned) dsc_chat_render(json_string_value(prompt), r, json_string_value(answer), j.owned, j.len + 1);
        }
        json_decref(o);
        if (rc) return rc;
        if (!j.owned) return dsc_set_error("%s:%d: out of memory", path, line);
        j.text = j.owned;
        if (add_job(p, &j)) {
            free(j.owned);
            return DSC_ERR;
        }
        pos = next;
    }
    return DSC_OK;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

static char *hex64(uint64_t v, char *buf) {
    snprintf(buf, 17, "%016llx", (unsigned long long)v);
    return buf;
}

static json_t *counts_json(uint64_t docs, uint64_t tokens) {
    return json_pack("{s:I,s:I}", "documents", (json_int_t)docs, "tokens", (json_int_t)tokens);
}

static int write_meta(const prep *p, const dsc_prepare_report *rep, const char *path) {
    const dsc_prepare_options *o = p->o;
    char h[3][17];
    json_t *m = json_object(), *splits = json_object(), *sources = json_array();
    json_object_set_new(m, "format", json_string("dsc-data-1"));
    json_object_set_new(m, "command", json_string(o->command_line ? o->command_line : ""));
    json_object_set_new(m, "tokenizer",
                        json_pack("{s:s,s:s,s:i,s:i}", "path", o->tokenizer_path ? o->tokenizer_path : "", "hash",
                                  hex64(dsc_tokenizer_hash(o->tok), h[0]), "vocab_size",
                                  dsc_tokenizer_vocab_size(o->tok), "eos_id", (int)p->eos));
    json_object_set_new(m, "seed", json_integer((json_int_t)o->seed));
    json_object_set_new(m, "val_fraction", json_real(o->val_fraction));
    const char *names[2] = {"train", "val"}, *files[2] = {"train.bin", "val.bin"};
    for (int s = 0; s < 2; s++) {
        json_t *x = counts_json(rep->docs[s], rep->tokens[s]);
        json_object_set_new(x, "file", json_string(files[s]));
        json_object_set_new(x, "checksum", json_string(hex64(rep->checksum[s], h[1])));
        json_object_set_new(splits, names[s], x);
    }
    json_object_set_new(m, "splits", splits);
    for (int i = 0; i < p->n_src; i++) {
        const source_stat *s = &p->src[i];
        json_t *x = json_pack("{s:s,s:s,s:I}", "name", s->name, "kind", s->kind, "bytes", (json_int_t)s->bytes);
        if (s->path) json_object_set_new(x, "path", json_string(s->path));
        json_object_set_new(x, "train", counts_json(s->docs[0], s->tokens[0]));
        json_object_set_new(x, "val", counts_json(s->docs[1], s->tokens[1]));
        json_array_append_new(sources, x);
    }
    json_object_set_new(m, "sources", sources);
    json_object_set_new(m, "synthetic",
                        json_pack("{s:I,s:I,s:I,s:I,s:i,s:i,s:i,s:i,s:i,s:i}", "arithmetic", (json_int_t)o->synth_n[0],
                                  "countdown", (json_int_t)o->synth_n[1], "seed", (json_int_t)o->synth_seed,
                                  "heldout_seed", (json_int_t)DSC_SYNTH_HELDOUT_SEED, "max_digits",
                                  o->synth_opt.max_digits, "min_numbers", o->synth_opt.min_numbers, "max_numbers",
                                  o->synth_opt.max_numbers, "max_number", o->synth_opt.max_number, "max_target",
                                  o->synth_opt.max_target, "min_steps", o->synth_opt.min_steps));
    char *text = json_dumps(m, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(m);
    if (!text) return dsc_set_error("%s: cannot serialise meta.json (file names must be UTF-8)", path);
    int rc = dsc_write_file_atomic(path, text, strlen(text));
    free(text);
    return rc;
}

dsc_status dsc_data_prepare(const dsc_prepare_options *o, dsc_prepare_report *rep) {
    memset(rep, 0, sizeof *rep);
    if (!o->tok || !o->out_dir) return dsc_set_error("prepare: a tokenizer and an output folder are required");
    if (!(o->val_fraction >= 0 && o->val_fraction <= 0.5))
        return dsc_set_error("prepare: val_fraction: expected 0..0.5, found %g", o->val_fraction);
    dsc_special_ids sp;
    dsc_tokenizer_specials(o->tok, &sp);
    if (sp.eos < 0)
        return dsc_set_error("%s: the tokenizer has no end-of-sentence token (documents are separated by EOS)",
                             o->tokenizer_path ? o->tokenizer_path : "tokenizer");
    if (dsc_mkdir(o->out_dir)) return DSC_ERR;
    int vocab = dsc_tokenizer_vocab_size(o->tok);
    uint64_t th = dsc_tokenizer_hash(o->tok);
    char paths[3][4200];
    snprintf(paths[0], sizeof paths[0], "%s/train.bin", o->out_dir);
    snprintf(paths[1], sizeof paths[1], "%s/val.bin", o->out_dir);
    snprintf(paths[2], sizeof paths[2], "%s/meta.json", o->out_dir);

    prep p = {.o = o, .eos = sp.eos, .t0 = omp_get_wtime()};
    p.jobs = calloc(BATCH_JOBS, sizeof *p.jobs);
    p.src = calloc((size_t)o->n_files + 2, sizeof *p.src);
    dsc_mapped_file *maps = calloc((size_t)o->n_files + 1, sizeof *maps);
    int rc = DSC_ERR;
    if (!p.jobs || !p.src || !maps) {
        dsc_set_error("prepare: out of memory");
        goto done;
    }
    for (int i = 0; i < o->n_files; i++) {
        if (dsc_map_file(o->files[i], &maps[i])) goto done;
        p.bytes_total += maps[i].size;
    }
    if (dsc_shard_writer_open(paths[0], vocab, th, &p.w[0]) || dsc_shard_writer_open(paths[1], vocab, th, &p.w[1]))
        goto done;

    for (int i = 0; i < o->n_files; i++) {
        bool jsonl = ends_with(o->files[i], ".jsonl");
        source_stat *s = new_source(&p, o->files[i], o->files[i], jsonl ? "jsonl" : "text");
        s->bytes = maps[i].size;
        if (maps[i].size && (jsonl ? read_jsonl(&p, &maps[i], o->files[i]) : read_text(&p, &maps[i]))) goto done;
        if (flush_batch(&p)) goto done; /* the file's map may go once its documents are written */
        dsc_unmap_file(&maps[i]);
    }
    for (int t = 0; t < 2; t++) {
        if (!o->synth_n[t]) continue;
        char name[64];
        snprintf(name, sizeof name, "synthetic:%s", dsc_task_name((dsc_task)t));
        new_source(&p, name, NULL, "synthetic");
        uint64_t n_val = (uint64_t)ceil((double)o->synth_n[t] * o->val_fraction);
        for (int split = 0; split < 2; split++) {
            uint64_t n = split ? n_val : o->synth_n[t];
            for (uint64_t i = 0; i < n; i++) {
                job j = {.kind = JOB_SYNTH, .split = split, .source = p.n_src - 1, .task = (dsc_task)t,
                         .ssplit = split ? DSC_SPLIT_HELDOUT : DSC_SPLIT_TRAIN,
                         .sseed = split ? DSC_SYNTH_HELDOUT_SEED : o->synth_seed, .index = i, .len = 512};
                if (add_job(&p, &j)) goto done;
            }
        }
        if (flush_batch(&p)) goto done;
    }
    if (flush_batch(&p)) goto done;
    for (int s = 0; s < 2; s++) {
        rep->docs[s] = dsc_shard_writer_docs(p.w[s]);
        rep->tokens[s] = dsc_shard_writer_tokens(p.w[s]);
        rep->checksum[s] = dsc_shard_writer_checksum(p.w[s]);
    }
    dsc_shard_writer *w0 = p.w[0], *w1 = p.w[1];
    p.w[0] = p.w[1] = NULL;
    if (dsc_shard_writer_commit(w0)) {
        dsc_shard_writer_abort(w1);
        goto done;
    }
    if (dsc_shard_writer_commit(w1)) goto done;
    /* read both back through the validating reader before declaring success */
    for (int s = 0; s < 2; s++) {
        dsc_shard *sh;
        if (dsc_shard_open(paths[s], vocab, th, &sh)) goto done;
        bool same = dsc_shard_checksum(sh) == rep->checksum[s] && dsc_shard_tokens(sh) == rep->tokens[s];
        dsc_shard_close(sh);
        if (!same) {
            dsc_set_error("%s: read back differs from what was written", paths[s]);
            goto done;
        }
    }
    rep->bytes_in = p.bytes_total;
    rep->seconds = omp_get_wtime() - p.t0;
    rc = write_meta(&p, rep, paths[2]);
done:
    for (int i = 0; i < p.n_jobs; i++) free_job(&p.jobs[i]);
    dsc_shard_writer_abort(p.w[0]);
    dsc_shard_writer_abort(p.w[1]);
    for (int i = 0; maps && i < o->n_files; i++) dsc_unmap_file(&maps[i]);
    free(maps);
    free(p.jobs);
    free(p.src);
    return rc;
}
