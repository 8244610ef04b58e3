/* sft.c: supervised fine-tuning (see sft.h). The data half turns JSONL conversations into token
 * sequences with an assistant mask; the training half is the pretraining loop's shape (AdamW,
 * schedule, expert-bias update, validation, metrics, checkpoints, resume) over shuffled,
 * padded batches of whole conversations instead of windows of a token stream. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base/error.h"
#include "base/fileio.h"
#include "base/rng.h"
#include "data/data.h"
#include "train/adamw.h"
#include "train/checkpoint.h"
#include "train/runlog.h"
#include "train/sft.h"

/* ---------------------------------------------------------------------------------------------
 * Rendering one conversation
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    int32_t *tok;
    uint8_t *mask;
    size_t n, cap;
} seqbuf;

static int sb_reserve(seqbuf *b, size_t more) {
    if (b->n + more <= b->cap) return DSC_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + more) cap *= 2;
    int32_t *t = realloc(b->tok, cap * sizeof *t);
    if (t) b->tok = t;
    uint8_t *m = t ? realloc(b->mask, cap) : NULL;
    if (!t || !m) return dsc_set_error("out of memory");
    b->mask = m;
    b->cap = cap;
    return DSC_OK;
}

static int sb_id(seqbuf *b, int32_t id, uint8_t target) {
    if (sb_reserve(b, 1)) return DSC_ERR;
    b->tok[b->n] = id;
    b->mask[b->n++] = target;
    return DSC_OK;
}

/* Encodes one piece of text on its own (special-token text parsed) and appends it. */
static int sb_text(seqbuf *b, const dsc_tokenizer *tk, const char *s, size_t len, uint8_t target) {
    if (len == 0) return DSC_OK;
    int32_t *ids;
    size_t n;
    if (dsc_tokenizer_encode(tk, s, len, true, &ids, &n)) return DSC_ERR;
    int rc = sb_reserve(b, n);
    if (rc == DSC_OK) {
        memcpy(b->tok + b->n, ids, n * sizeof *ids);
        memset(b->mask + b->n, target, n);
        b->n += n;
    }
    free(ids);
    return rc;
}

/* The string field `key` of o: NULL if absent (an error unless optional), an error if not a string. */
static int string_field(json_t *o, const char *key, const char *name, bool optional, json_t **out) {
    *out = json_object_get(o, key);
    if (!*out) return optional ? DSC_OK : dsc_set_error("field \"%s\": missing", name);
    if (!json_is_string(*out)) return dsc_set_error("field \"%s\": expected a string", name);
    return DSC_OK;
}

typedef enum { ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT } role;

/* {"messages": [...]}: system texts after BOS, then the user and assistant turns in order. */
static int render_messages(seqbuf *b, const dsc_tokenizer *tk, const dsc_special_ids *sp, json_t *msgs) {
    if (!json_is_array(msgs)) return dsc_set_error("field \"messages\": expected a list of {\"role\", \"content\"} objects");
    size_t nm = json_array_size(msgs);
    if (nm == 0) return dsc_set_error("field \"messages\": empty (expected at least one assistant message)");
    role *roles = malloc(nm * sizeof *roles);
    json_t **content = malloc(nm * sizeof *content);
    char *system = NULL;
    size_t sys_len = 0;
    int rc = roles && content ? DSC_OK : dsc_set_error("out of memory"), n_assistant = 0;
    for (size_t i = 0; i < nm && rc == DSC_OK; i++) {
        json_t *m = json_array_get(msgs, i), *r;
        char name[64];
        if (!json_is_object(m)) {
            rc = dsc_set_error("field \"messages[%zu]\": expected an object with \"role\" and \"content\"", i);
            break;
        }
        snprintf(name, sizeof name, "messages[%zu].role", i);
        if ((rc = string_field(m, "role", name, false, &r))) break;
        const char *rs = json_string_value(r);
        if (!strcmp(rs, "system")) roles[i] = ROLE_SYSTEM;
        else if (!strcmp(rs, "user")) roles[i] = ROLE_USER;
        else if (!strcmp(rs, "assistant")) roles[i] = ROLE_ASSISTANT, n_assistant++;
        else {
            rc = dsc_set_error("field \"%s\": expected \"system\", \"user\" or \"assistant\", found \"%.40s\"", name, rs);
            break;
        }
        snprintf(name, sizeof name, "messages[%zu].content", i);
        if ((rc = string_field(m, "content", name, false, &content[i]))) break;
        if (roles[i] == ROLE_SYSTEM) { /* all system texts go first, joined by a blank line */
            size_t l = json_string_length(content[i]);
            char *s = realloc(system, sys_len + l + 3);
            if (!s) {
                rc = dsc_set_error("out of memory");
                break;
            }
            system = s;
            if (sys_len) memcpy(system + sys_len, "\n\n", 2), sys_len += 2;
            memcpy(system + sys_len, json_string_value(content[i]), l);
            sys_len += l;
        }
    }
    if (rc == DSC_OK && n_assistant == 0)
        rc = dsc_set_error("field \"messages\": no message with role \"assistant\" (nothing to train on)");
    if (rc == DSC_OK) rc = sb_id(b, sp->bos, 0);
    if (rc == DSC_OK) rc = sb_text(b, tk, system, sys_len, 0);
    for (size_t i = 0; i < nm && rc == DSC_OK; i++) {
        const char *s = json_string_value(content[i]);
        size_t l = json_string_length(content[i]);
        if (roles[i] == ROLE_USER) {
            rc = sb_id(b, sp->user, 0);
            if (rc == DSC_OK) rc = sb_text(b, tk, s, l, 0);
        } else if (roles[i] == ROLE_ASSISTANT) {
            rc = sb_id(b, sp->assistant, 0);
            if (rc == DSC_OK) rc = sb_text(b, tk, s, l, 1);
            if (rc == DSC_OK) rc = sb_id(b, sp->eos, 1);
        }
    }
    free(roles);
    free(content);
    free(system);
    return rc;
}

/* {"prompt", "answer"[, "reasoning"]}: dsc_chat_render's conversation, piece by piece. */
static int render_problem(seqbuf *b, const dsc_tokenizer *tk, const dsc_special_ids *sp, json_t *o) {
    json_t *prompt, *answer, *reasoning;
    if (string_field(o, "prompt", "prompt", false, &prompt) || string_field(o, "answer", "answer", false, &answer) ||
        string_field(o, "reasoning", "reasoning", true, &reasoning))
        return DSC_ERR;
    size_t rl = reasoning ? json_string_length(reasoning) : 0, al = json_string_length(answer);
    char *reply = malloc(rl + al + 32);
    if (!reply) return dsc_set_error("out of memory");
    size_t n = 0;
    if (rl) {
        n = (size_t)sprintf(reply, "<think>\n");
        memcpy(reply + n, json_string_value(reasoning), rl);
        n += rl;
        n += (size_t)sprintf(reply + n, "\n</think>\n");
    }
    memcpy(reply + n, json_string_value(answer), al);
    n += al;
    int rc = sb_id(b, sp->bos, 0);
    if (rc == DSC_OK) rc = sb_id(b, sp->user, 0);
    if (rc == DSC_OK) rc = sb_text(b, tk, json_string_value(prompt), json_string_length(prompt), 0);
    if (rc == DSC_OK) rc = sb_id(b, sp->assistant, 0);
    if (rc == DSC_OK) rc = sb_text(b, tk, reply, n, 1);
    if (rc == DSC_OK) rc = sb_id(b, sp->eos, 1);
    free(reply);
    return rc;
}

static int check_specials(const dsc_tokenizer *tk, dsc_special_ids *sp) {
    dsc_tokenizer_specials(tk, sp);
    const char *missing = sp->bos < 0         ? "<｜begin▁of▁sentence｜>"
                          : sp->eos < 0       ? "<｜end▁of▁sentence｜>"
                          : sp->user < 0      ? "<｜User｜>"
                          : sp->assistant < 0 ? "<｜Assistant｜>"
                                              : NULL;
    return missing ? dsc_set_error("the tokenizer has no %s token (the chat template needs it)", missing) : DSC_OK;
}

dsc_status sft_encode_line(const dsc_tokenizer *tk, const char *line, size_t len, int32_t **tok, uint8_t **mask,
                           size_t *n) {
    *tok = NULL;
    *mask = NULL;
    *n = 0;
    dsc_special_ids sp;
    if (check_specials(tk, &sp)) return DSC_ERR;
    json_error_t e;
    json_t *o = json_loadb(line, len, 0, &e);
    if (!o) return dsc_set_error("invalid JSON: %s (column %d)", e.text, e.column);
    seqbuf b = {0};
    int rc;
    json_t *msgs = json_object_get(o, "messages");
    if (!json_is_object(o))
        rc = dsc_set_error("expected a JSON object, one conversation per line");
    else if (msgs)
        rc = render_messages(&b, tk, &sp, msgs);
    else if (json_object_get(o, "prompt") || json_object_get(o, "answer"))
        rc = render_problem(&b, tk, &sp, o);
    else
        rc = dsc_set_error("expected a field \"messages\" (a list of {\"role\", \"content\"}) or the fields \"prompt\" "
                           "and \"answer\"");
    json_decref(o);
    if (rc) {
        free(b.tok);
        free(b.mask);
        return DSC_ERR;
    }
    *tok = b.tok;
    *mask = b.mask;
    *n = b.n;
    return DSC_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Data sets
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    sft_data d;
    int cap_n;
    int64_t cap_tok;
} data_builder;

static int data_add(data_builder *db, const int32_t *tok, const uint8_t *mask, size_t n, int line, uint64_t hash) {
    sft_data *d = &db->d;
    if (d->n + 1 >= db->cap_n) {
        int cap = db->cap_n ? db->cap_n * 2 : 1024;
        int64_t *off = realloc(d->off, (size_t)(cap + 1) * sizeof *off);
        if (off) d->off = off;
        int *ln = off ? realloc(d->line, (size_t)cap * sizeof *ln) : NULL;
        if (ln) d->line = ln;
        uint64_t *h = ln ? realloc(d->hash, (size_t)cap * sizeof *h) : NULL;
        if (!h) return dsc_set_error("out of memory");
        d->hash = h;
        if (db->cap_n == 0) d->off[0] = 0;
        db->cap_n = cap;
    }
    int64_t at = d->off[d->n];
    if (at + (int64_t)n > db->cap_tok) {
        int64_t cap = db->cap_tok ? db->cap_tok : 1 << 16;
        while (cap < at + (int64_t)n) cap *= 2;
        int32_t *t = realloc(d->tok, (size_t)cap * sizeof *t);
        if (t) d->tok = t;
        uint8_t *m = t ? realloc(d->mask, (size_t)cap) : NULL;
        if (!m) return dsc_set_error("out of memory");
        d->mask = m;
        db->cap_tok = cap;
    }
    memcpy(d->tok + at, tok, n * sizeof *tok);
    memcpy(d->mask + at, mask, n);
    for (size_t i = 1; i < n; i++) d->targets += mask[i];
    d->tokens += (int64_t)n;
    d->line[d->n] = line;
    d->hash[d->n] = hash;
    d->off[++d->n] = at + (int64_t)n;
    return DSC_OK;
}

void sft_data_free(sft_data *d) {
    if (!d) return;
    free(d->off);
    free(d->tok);
    free(d->mask);
    free(d->line);
    free(d->hash);
    free(d);
}

static void builder_free(data_builder *db) {
    free(db->d.off);
    free(db->d.tok);
    free(db->d.mask);
    free(db->d.line);
    free(db->d.hash);
    memset(db, 0, sizeof *db);
}

/* The data set the builder holds, which it no longer owns. */
static sft_data *builder_finish(data_builder *db) {
    sft_data *d = malloc(sizeof *d);
    if (!d || (!db->d.off && !(db->d.off = calloc(1, sizeof *db->d.off)))) {
        free(d);
        dsc_set_error("out of memory");
        return NULL;
    }
    *d = db->d;
    memset(db, 0, sizeof *db);
    return d;
}

dsc_status sft_data_load(const char *path, const dsc_tokenizer *tk, int max_tokens, sft_long_policy policy,
                         sft_data **out) {
    *out = NULL;
    if (max_tokens < 3) return dsc_set_error("sft: a conversation needs at least 3 tokens, limit %d", max_tokens);
    dsc_special_ids sp;
    if (check_specials(tk, &sp)) return dsc_prefix_error("%s", path);
    dsc_mapped_file mf;
    if (dsc_map_file(path, &mf)) return DSC_ERR;
    data_builder db;
    memset(&db, 0, sizeof db);
    const char *text = (const char *)mf.data;
    size_t pos = 0, size = mf.size;
    int line = 0, rc = DSC_OK, nonblank = 0;
    while (pos < size && rc == DSC_OK) {
        const char *nl = memchr(text + pos, '\n', size - pos);
        size_t end = nl ? (size_t)(nl - text) : size, len = end - pos;
        const char *s = text + pos;
        pos = end + 1;
        line++;
        size_t k = 0;
        while (k < len && strchr(" \t\r", s[k])) k++;
        if (k == len) continue;
        nonblank++;
        int32_t *tok;
        uint8_t *mask;
        size_t n;
        if (sft_encode_line(tk, s, len, &tok, &mask, &n)) {
            rc = dsc_prefix_error("%s:%d", path, line);
            break;
        }
        bool keep = true;
        if (n > (size_t)max_tokens) {
            int any = 0;
            for (int i = 1; i < max_tokens; i++) any |= mask[i];
            if (policy == SFT_SKIP || !any) db.d.skipped++, keep = false;
            else db.d.truncated++, n = (size_t)max_tokens;
        }
        if (keep) rc = data_add(&db, tok, mask, n, line, dsc_fnv1a64(DSC_FNV_OFFSET, s, len));
        free(tok);
        free(mask);
    }
    db.d.file_hash = dsc_fnv1a64(DSC_FNV_OFFSET, text ? text : "", size);
    dsc_unmap_file(&mf);
    if (rc == DSC_OK && nonblank == 0) rc = dsc_set_error("%s: no conversations (the file is empty)", path);
    else if (rc == DSC_OK && db.d.n == 0)
        rc = dsc_set_error("%s: no conversation fits in %d tokens (%d longer ones left out; raise --seq)", path,
                           max_tokens, db.d.skipped);
    if (rc == DSC_OK && !(*out = builder_finish(&db))) rc = DSC_ERR;
    builder_free(&db);
    return rc;
}

/* The split key of a line: its hash as a fraction in [0, 1) (splitmix-scrambled, so that similar
 * lines spread). */
static double split_key(uint64_t hash) {
    dsc_rng r;
    dsc_rng_seed(&r, hash);
    return (double)(dsc_rng_u64(&r) >> 11) * 0x1p-53;
}

dsc_status sft_data_split(const sft_data *d, double frac, sft_data **train, sft_data **val) {
    *train = *val = NULL;
    if (!(frac >= 0 && frac < 1)) return dsc_set_error("sft: validation fraction: expected [0, 1), found %g", frac);
    if (frac > 0 && d->n < 2)
        return dsc_set_error("sft: cannot split a validation set off %d conversation(s); give --val or --val-fraction 0",
                             d->n);
    uint8_t *held = calloc((size_t)d->n + 1, 1);
    if (!held) return dsc_set_error("out of memory");
    int n_held = 0, lowest = 0;
    double low = 2;
    for (int i = 0; i < d->n && frac > 0; i++) {
        double u = split_key(d->hash[i]);
        if (u < frac) held[i] = 1, n_held++;
        if (u < low) low = u, lowest = i;
    }
    if (frac > 0 && n_held == 0) held[lowest] = 1, n_held = 1;
    int rc = DSC_OK;
    if (n_held == d->n) rc = dsc_set_error("sft: the validation fraction %g leaves no training conversation", frac);
    data_builder b[2];
    memset(b, 0, sizeof b);
    for (int i = 0; i < d->n && rc == DSC_OK; i++)
        rc = data_add(&b[held[i]], d->tok + d->off[i], d->mask + d->off[i], (size_t)(d->off[i + 1] - d->off[i]),
                      d->line[i], d->hash[i]);
    free(held);
    for (int s = 0; s < 2; s++) b[s].d.file_hash = d->file_hash;
    b[0].d.truncated = d->truncated, b[0].d.skipped = d->skipped;
    if (rc == DSC_OK && (*train = builder_finish(&b[0])) && (*val = builder_finish(&b[1]))) return DSC_OK;
    sft_data_free(*train);
    *train = NULL;
    builder_free(&b[0]);
    builder_free(&b[1]);
    return DSC_ERR;
}

/* A conversation's input length: its tokens but the last. */
static int input_len(const sft_data *d, int i) { return (int)(d->off[i + 1] - d->off[i]) - 1; }

int sft_batch(const sft_data *d, const int *idx, int B, int32_t pad, int32_t *tokens, int32_t *targets) {
    int T = 1;
    for (int b = 0; b < B; b++) {
        int len = input_len(d, idx[b]);
        if (len > T) T = len;
    }
    for (int b = 0; b < B; b++) {
        const int32_t *tk = d->tok + d->off[idx[b]];
        const uint8_t *mk = d->mask + d->off[idx[b]];
        int len = input_len(d, idx[b]);
        int32_t *x = tokens + (size_t)b * T, *y = targets + (size_t)b * T; /* [T] each */
        for (int t = 0; t < T; t++) {
            x[t] = t < len ? tk[t] : pad;
            y[t] = t < len && mk[t + 1] ? tk[t + 1] : -1;
        }
    }
    return T;
}

/* ---------------------------------------------------------------------------------------------
 * Training
 * ------------------------------------------------------------------------------------------- */

void sft_options_default(sft_options *o) {
    memset(o, 0, sizeof *o);
    o->val_fraction = 0.05;
    o->batch = 8;
    o->seq = 512;
    o->steps = 1000;
    o->schedule = (lr_schedule){SCHEDULE_COSINE, 5e-4f, 5e-5f, 20, 1000, 0.2f};
    o->weight_decay = 0.1f;
    o->beta1 = 0.9f;
    o->beta2 = 0.95f;
    o->eps = 1e-8f;
    o->clip = 1.0f;
    o->eval_every = 50;
    o->save_every = 200;
    o->keep = 3;
    o->seed = 1;
}

/* The hyperparameters of the run, stored with each checkpoint; the ones in resume_keys decide
 * which conversations come next, so a resumed run must use the same. */
static const char *const resume_keys[] = {"batch", "batch_tokens", "seq", "seed", "data_hash", "val_fraction", "too_long", NULL};

static char *hparams_json(const sft_options *o, const sft_data *all, const char *model, const char *stored) {
    char hex[32];
    snprintf(hex, sizeof hex, "%016" PRIx64, all->file_hash);
    json_t *h = json_object();
    json_object_set_new(h, "kind", json_string("sft"));
    json_object_set_new(h, "batch", json_integer(o->batch));
    json_object_set_new(h, "batch_tokens", json_integer(o->batch_tokens));
    json_object_set_new(h, "seq", json_integer(o->seq));
    json_object_set_new(h, "steps", json_integer(o->steps));
    json_object_set_new(h, "lr", json_real(o->schedule.lr));
    json_object_set_new(h, "min_lr", json_real(o->schedule.min_lr));
    json_object_set_new(h, "warmup", json_integer(o->schedule.warmup));
    json_object_set_new(h, "schedule", json_string(schedule_name(o->schedule.kind)));
    json_object_set_new(h, "decay_frac", json_real(o->schedule.decay_frac));
    json_object_set_new(h, "weight_decay", json_real(o->weight_decay));
    json_object_set_new(h, "beta1", json_real(o->beta1));
    json_object_set_new(h, "beta2", json_real(o->beta2));
    json_object_set_new(h, "clip", json_real(o->clip));
    json_object_set_new(h, "seed", json_integer((json_int_t)o->seed));
    json_object_set_new(h, "data", json_string(o->data_path));
    json_object_set_new(h, "data_hash", json_string(hex));
    json_object_set_new(h, "val", o->val_path ? json_string(o->val_path) : json_null());
    json_object_set_new(h, "val_fraction", json_real(o->val_path ? 0.0 : o->val_fraction));
    json_object_set_new(h, "too_long", json_string(o->too_long == SFT_SKIP ? "skip" : "truncate"));
    json_t *base = NULL;
    json_error_t e;
    json_t *s = stored ? json_loads(stored, 0, &e) : NULL; /* a resumed run keeps the original base model */
    if (s && json_is_string(json_object_get(s, "model"))) base = json_copy(json_object_get(s, "model"));
    json_decref(s);
    json_object_set_new(h, "model", base ? base : json_string(model ? model : ""));
    char *out = json_dumps(h, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(h);
    return out;
}

static void epoch_order(int *perm, int n, uint64_t seed, uint64_t epoch) {
    dsc_rng r;
    dsc_rng_seed(&r, seed ^ (0x9E3779B97F4A7C15ull * (epoch + 1)));
    for (int i = 0; i < n; i++) perm[i] = i;
    dsc_rng_shuffle(&r, perm, n);
}

/* Token-budget batches (batch_tokens > 0). Conversations differ in length by 10x (a one-digit sum
 * against a long multiplication), so fixed-size batches padded to their longest are mostly
 * padding. Instead: the epoch's shuffled order, sorted by length within windows of
 * SFT_LENGTH_WINDOW conversations, cut greedily into batches of at most `budget` padded tokens
 * (B x longest; one conversation alone may exceed it), then the batches shuffled. start[i] = 1
 * where a batch begins. Everything depends on (seed, epoch) only, and the loader stops at batch
 * starts, so a resumed run continues with the same batches. */
#define SFT_LENGTH_WINDOW 1024

typedef struct {
    int len, id;
} len_id;

static int cmp_len_id(const void *a, const void *b) {
    const len_id *x = a, *y = b;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static dsc_status epoch_batches(const sft_data *d, int budget, uint64_t seed, uint64_t epoch, int *perm,
                                uint8_t *start) {
    int n = d->n, nb = 0;
    len_id *li = malloc(sizeof *li * (size_t)n);
    int *bfirst = malloc(sizeof *bfirst * (size_t)n), *order = malloc(sizeof *order * (size_t)n);
    if (!li || !bfirst || !order) {
        free(li);
        free(bfirst);
        free(order);
        return dsc_set_error("out of memory");
    }
    epoch_order(perm, n, seed, epoch);
    for (int i = 0; i < n; i++) li[i] = (len_id){input_len(d, perm[i]), perm[i]};
    for (int w = 0; w < n; w += SFT_LENGTH_WINDOW)
        qsort(li + w, (size_t)(n - w < SFT_LENGTH_WINDOW ? n - w : SFT_LENGTH_WINDOW), sizeof *li, cmp_len_id);
    for (int i = 0; i < n;) { /* greedy: grow the batch while B x longest fits */
        bfirst[nb++] = i;
        int B = 1, longest = li[i].len;
        while (i + B < n) {
            int l = li[i + B].len > longest ? li[i + B].len : longest;
            if ((int64_t)(B + 1) * l > budget) break;
            longest = l;
            B++;
        }
        i += B;
    }
    for (int b = 0; b < nb; b++) order[b] = b;
    dsc_rng r;
    dsc_rng_seed(&r, seed ^ (0xD1B54A32D192ED03ull * (epoch + 1)));
    dsc_rng_shuffle(&r, order, nb);
    for (int b = 0, k = 0; b < nb; b++) {
        int first = bfirst[order[b]], end = order[b] + 1 < nb ? bfirst[order[b] + 1] : n;
        for (int i = first; i < end; i++, k++) {
            perm[k] = li[i].id;
            start[k] = i == first;
        }
    }
    free(li);
    free(bfirst);
    free(order);
    return DSC_OK;
}

/* The order of one epoch: token-budget batches (start marks their first conversations), or the
 * shuffled conversations taken `batch` at a time (start unused). */
static dsc_status epoch_sequence(const sft_data *d, const sft_options *o, uint64_t seed, uint64_t epoch, int *perm,
                                 uint8_t *start) {
    if (o->batch_tokens > 0) return epoch_batches(d, o->batch_tokens, seed, epoch, perm, start);
    epoch_order(perm, d->n, seed, epoch);
    return DSC_OK;
}

/* Mean cross-entropy over the assistant tokens of the validation set (batches in file order). */
static float validate(dsc_model *m, const sft_data *val, const sft_options *o, int32_t pad, int *idx, int32_t *tok,
                      int32_t *tgt, int64_t *count_out) {
    int nb = (val->n + o->batch - 1) / o->batch;
    if (o->eval_batches > 0 && nb > o->eval_batches) nb = o->eval_batches;
    double sum = 0;
    int64_t count = 0;
    for (int k = 0; k < nb; k++) {
        int B = val->n - k * o->batch < o->batch ? val->n - k * o->batch : o->batch;
        for (int b = 0; b < B; b++) idx[b] = k * o->batch + b;
        int T = sft_batch(val, idx, B, pad, tok, tgt);
        dsc_losses ls;
        if (dsc_model_loss(m, tok, tgt, B, T, &ls)) return NAN;
        sum += (double)ls.ce * ls.n_targets;
        count += ls.n_targets;
    }
    *count_out = count;
    if (!count) dsc_set_error("sft: the validation set has no assistant token");
    return count ? (float)(sum / count) : NAN;
}

dsc_status sft_run(const sft_options *o, sft_callback cb, void *user, volatile sig_atomic_t *stop, sft_summary *sum) {
    memset(sum, 0, sizeof *sum);
    sum->first_val_loss = sum->final_val_loss = NAN;
    char path[4200], tok_path[4200], ckdir[4096] = "", mdir[4096] = "";
    dsc_model *m = NULL;
    adamw *opt = NULL;
    dsc_tokenizer *tk = NULL;
    sft_data *all = NULL, *train = NULL, *val = NULL;
    int32_t *tok = NULL, *tgt = NULL;
    int *perm = NULL, *idx = NULL;
    uint8_t *start = NULL;
    FILE *metrics = NULL, *dump = NULL;
    char *hp = NULL, *stored_hp = NULL;
    int rc = DSC_ERR;

    if (o->batch < 1 || o->batch_tokens < 0 || o->seq < 2 || o->steps < 1 || o->eval_batches < 0 || !o->data_path ||
        !o->out_dir)
        return dsc_set_error("sft: batch >= 1, batch_tokens >= 0, seq >= 2, steps >= 1, a data file and an output "
                             "directory expected");
    if (!o->resume && !o->model_dir) return dsc_set_error("sft: a model directory is required (or resume)");
    if (o->val_path && o->val_fraction > 0) return dsc_set_error("sft: give a validation file or a fraction, not both");
    if (dsc_mkdir(o->out_dir)) goto done;

    /* ---- model and optimizer: the base model with fresh moments, or the newest checkpoint ---- */
    ckpt_state cs;
    memset(&cs, 0, sizeof cs);
    if (o->resume) {
        if (ckpt_latest(o->out_dir, ckdir, sizeof ckdir) || ckpt_load(ckdir, &m, &opt, &cs, &stored_hp)) goto done;
        snprintf(mdir, sizeof mdir, "%s", ckdir);
    } else {
        if (ckpt_resolve_model(o->model_dir, mdir, sizeof mdir) || dsc_model_load(mdir, &m) || adamw_create(m, &opt))
            goto done;
        cs.loader.seed = o->seed;
    }
    const dsc_config *c = dsc_model_config(m);
    if (o->seq > c->max_position_embeddings) {
        dsc_set_error("%s/config.json: max_position_embeddings is %d, shorter than --seq %d", mdir,
                      c->max_position_embeddings, o->seq);
        goto done;
    }

    /* ---- tokenizer ---- */
    if (o->tokenizer_path) snprintf(tok_path, sizeof tok_path, "%s", o->tokenizer_path);
    else snprintf(tok_path, sizeof tok_path, "%s/tokenizer.json", mdir);
    if (dsc_tokenizer_load(tok_path, &tk)) {
        if (!o->tokenizer_path) dsc_prefix_error("no tokenizer with the model (give one)");
        goto done;
    }
    if (dsc_tokenizer_vocab_size(tk) > c->vocab_size) {
        dsc_set_error("%s: the tokenizer has %d tokens but the model's vocab_size is %d", tok_path,
                      dsc_tokenizer_vocab_size(tk), c->vocab_size);
        goto done;
    }
    uint64_t tok_hash = dsc_tokenizer_hash(tk);
    if (o->resume && cs.tokenizer_hash && cs.tokenizer_hash != tok_hash) {
        dsc_set_error("%s: tokenizer %016" PRIx64 ", but the checkpoint %s was trained with tokenizer %016" PRIx64,
                      tok_path, tok_hash, ckdir, cs.tokenizer_hash);
        goto done;
    }
    cs.tokenizer_hash = tok_hash;
    dsc_special_ids sp;
    dsc_tokenizer_specials(tk, &sp);
    int32_t pad = sp.pad >= 0 ? sp.pad : sp.eos;

    /* ---- data ---- */
    if (sft_data_load(o->data_path, tk, o->seq + 1, o->too_long, &all)) goto done;
    if (o->val_path) {
        train = all;
        all = NULL;
        if (sft_data_load(o->val_path, tk, o->seq + 1, o->too_long, &val)) goto done;
    } else if (sft_data_split(all, o->val_fraction, &train, &val)) {
        goto done;
    }
    hp = hparams_json(o, all ? all : train, o->model_dir ? mdir : NULL, stored_hp);
    if (!hp) {
        dsc_set_error("out of memory");
        goto done;
    }
    if (o->resume) {
        if (runlog_check_resume(stored_hp, hp, resume_keys, ckdir)) goto done;
        if (cs.loader.position >= (uint64_t)train->n) {
            dsc_set_error("%s: state.json: loader position %" PRIu64 " is past the %d training conversations (another "
                          "data file?)",
                          ckdir, cs.loader.position, train->n);
            goto done;
        }
    }
    if (cb) {
        sft_progress p;
        memset(&p, 0, sizeof p);
        p.event = SFT_EVENT_DATA;
        p.step = cs.step;
        p.total_steps = o->steps;
        p.model = mdir;
        p.n_train = train->n;
        p.n_val = val ? val->n : 0;
        p.truncated = train->truncated + (val ? val->truncated : 0);
        p.skipped = train->skipped + (val ? val->skipped : 0);
        p.train_tokens = train->tokens;
        p.train_targets = train->targets;
        cb(&p, user);
    }

    /* a token-budget batch holds at most max(budget, one conversation of seq) tokens and budget rows */
    bool by_tokens = o->batch_tokens > 0;
    size_t cap = (size_t)o->batch * o->seq, max_rows = (size_t)o->batch;
    if (by_tokens && (size_t)o->batch_tokens > cap) cap = (size_t)o->batch_tokens;
    if (by_tokens && (size_t)o->batch_tokens > max_rows) max_rows = (size_t)o->batch_tokens;
    if (cap < (size_t)o->seq) cap = (size_t)o->seq;
    tok = malloc(sizeof(int32_t) * cap);
    tgt = malloc(sizeof(int32_t) * cap);
    perm = malloc(sizeof(int) * (size_t)train->n);
    start = malloc((size_t)train->n);
    idx = malloc(sizeof(int) * max_rows);
    if (!tok || !tgt || !perm || !start || !idx) {
        dsc_set_error("out of memory");
        goto done;
    }
    if (epoch_sequence(train, o, cs.loader.seed, cs.loader.epoch, perm, start)) goto done;
    if (by_tokens && !start[cs.loader.position]) {
        dsc_set_error("%s: state.json: loader position %" PRIu64 " is not the start of a batch (another "
                      "--batch-tokens?)",
                      ckdir, cs.loader.position);
        goto done;
    }
    uint64_t perm_epoch = cs.loader.epoch;

    snprintf(path, sizeof path, "%s/metrics.jsonl", o->out_dir);
    if (o->resume ? runlog_truncate(path, cs.step) : DSC_OK) goto done;
    metrics = fopen(path, o->resume ? "a" : "w");
    if (!metrics) {
        dsc_set_error("%s: cannot open: %s", path, strerror(errno));
        goto done;
    }
    if (o->dump_batches && !(dump = fopen(o->dump_batches, o->resume ? "a" : "w"))) {
        dsc_set_error("%s: cannot open: %s", o->dump_batches, strerror(errno));
        goto done;
    }
    bool has_val = val && val->n > 0;
    sft_progress p;
    memset(&p, 0, sizeof p);
    p.total_steps = o->steps;
    if (has_val && !o->resume) { /* the starting point */
        p.event = SFT_EVENT_EVAL;
        p.val_loss = sum->first_val_loss = validate(m, val, o, pad, idx, tok, tgt, &p.val_targets);
        if (!isfinite(p.val_loss)) goto done;
        fprintf(metrics, "{\"step\": 0, \"val_loss\": %.9g, \"val_targets\": %" PRId64 "}\n", p.val_loss,
                p.val_targets);
        fflush(metrics);
        if (cb) cb(&p, user);
    }

    lr_schedule sched = o->schedule;
    sched.total = o->steps;
    adamw_params ap = {0, o->beta1, o->beta2, o->eps, o->weight_decay};
    double t_start = runlog_now(), step_ema = 0;
    long step = cs.step;
    while (step < o->steps) {
        double t0 = runlog_now();
        float lr = schedule_lr(&sched, step);
        /* the next conversations of the shuffled epochs: `batch` of them (across an epoch boundary
         * if need be), or the next token-budget batch (which never spans two epochs) */
        int B = 0;
        do {
            if (perm_epoch != cs.loader.epoch) {
                if (epoch_sequence(train, o, cs.loader.seed, cs.loader.epoch, perm, start)) goto done;
                perm_epoch = cs.loader.epoch;
            }
            idx[B++] = perm[cs.loader.position];
            if (++cs.loader.position == (uint64_t)train->n) {
                cs.loader.position = 0;
                cs.loader.epoch++;
                if (by_tokens) break;
            }
        } while (by_tokens ? !start[cs.loader.position] : B < o->batch);
        int T = sft_batch(train, idx, B, pad, tok, tgt);
        uint64_t real = 0;
        for (int b = 0; b < B; b++) real += (uint64_t)input_len(train, idx[b]);
        if (dump) {
            int32_t hdr[2] = {B, T};
            size_t N = (size_t)B * T;
            if (fwrite(hdr, sizeof *hdr, 2, dump) != 2 || fwrite(tok, sizeof *tok, N, dump) != N ||
                fwrite(tgt, sizeof *tgt, N, dump) != N) {
                dsc_set_error("%s: write failed", o->dump_batches);
                goto done;
            }
        }
        dsc_model_zero_grad(m);
        dsc_losses l;
        if (dsc_model_forward_backward(m, tok, tgt, B, T, &l)) goto done;
        ap.lr = lr;
        double gnorm = adamw_step(opt, m, &ap, o->clip);
        dsc_model_update_expert_bias(m, c->bias_update_speed);
        step++;
        cs.step = step;
        cs.tokens += real;
        double dt = runlog_now() - t0;
        step_ema = step_ema == 0 ? dt : 0.9 * step_ema + 0.1 * dt;
        cs.elapsed += dt;
        if (!isfinite(l.total)) {
            dsc_set_error("step %ld: the loss is not finite (%g); lower the learning rate (now %g)", step, l.total, lr);
            goto done;
        }
        p.event = SFT_EVENT_STEP;
        p.step = step;
        p.loss = l.total, p.ce = l.ce, p.mtp = l.mtp, p.balance = l.balance, p.lr = lr, p.grad_norm = (float)gnorm;
        p.targets = l.n_targets;
        p.seq_len = T;
        p.rows = B;
        p.epoch = ((double)cs.loader.epoch * train->n + (double)cs.loader.position) / train->n;
        p.tokens_per_s = real / dt;
        p.elapsed_s = cs.elapsed;
        p.eta_s = step_ema * (o->steps - step);
        p.tokens = cs.tokens;
        fprintf(metrics,
                "{\"step\": %ld, \"loss\": %.9g, \"ce\": %.9g, \"mtp\": %.9g, \"balance\": %.9g, \"lr\": %.6g, "
                "\"grad_norm\": %.6g, \"targets\": %" PRId64 ", \"rows\": %d, \"seq\": %d, \"tokens\": %" PRIu64
                ", \"tokens_per_s\": %.1f, \"elapsed_s\": %.3f}\n",
                step, p.loss, p.ce, p.mtp, p.balance, lr, gnorm, p.targets, B, T, cs.tokens, p.tokens_per_s, cs.elapsed);
        if (cb) cb(&p, user);
        sum->final_loss = p.ce;

        bool last = step == o->steps;
        bool out_of_time = o->time_limit_s > 0 && runlog_now() - t_start >= o->time_limit_s;
        bool stopping = (stop && *stop) || out_of_time;
        if (has_val && ((o->eval_every > 0 && step % o->eval_every == 0) || last || stopping)) {
            p.event = SFT_EVENT_EVAL;
            p.val_loss = sum->final_val_loss = validate(m, val, o, pad, idx, tok, tgt, &p.val_targets);
            if (!isfinite(p.val_loss)) goto done;
            fprintf(metrics, "{\"step\": %ld, \"val_loss\": %.9g, \"val_targets\": %" PRId64 "}\n", step, p.val_loss,
                    p.val_targets);
            if (cb) cb(&p, user);
        }
        fflush(metrics);
        if ((o->save_every > 0 && step % o->save_every == 0) || last || stopping) {
            if (ckpt_save(o->out_dir, m, opt, &cs, hp, tok_path, o->keep)) goto done;
            snprintf(sum->checkpoint, sizeof sum->checkpoint, "%s/step-%08ld", o->out_dir, step);
        }
        if (stopping) {
            sum->interrupted = !last;
            break;
        }
    }
    sum->steps_done = step;
    sum->tokens = cs.tokens;
    sum->elapsed_s = cs.elapsed;
    fclose(metrics);
    metrics = NULL;
    char svg[4200];
    snprintf(svg, sizeof svg, "%s/loss.svg", o->out_dir);
    if (runlog_plot(path, svg, "dsc sft: cross-entropy of the assistant tokens (nats/token)",
                    "train (assistant tokens)", "validation (assistant tokens)", NAN, NULL))
        goto done;
    rc = DSC_OK;
done:
    if (metrics) fclose(metrics);
    if (dump) fclose(dump);
    free(hp);
    free(stored_hp);
    free(tok);
    free(tgt);
    free(perm);
    free(start);
    free(idx);
    sft_data_free(all);
    sft_data_free(train);
    sft_data_free(val);
    dsc_tokenizer_free(tk);
    adamw_free(opt);
    dsc_model_free(m);
    return rc;
}
