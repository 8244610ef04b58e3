/* checkpoint.c: crash-safe training checkpoints (see checkpoint.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "base/error.h"
#include "base/fileio.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "train/checkpoint.h"

#define STEP_FMT "step-%08ld"

static void fsync_path(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* Removes a directory and the files in it (checkpoints hold no subdirectories). */
static void remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char p[4096];
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

static int copy_file(const char *from, const char *to) {
    dsc_mapped_file mf;
    if (dsc_map_file(from, &mf)) return DSC_ERR;
    int rc = dsc_write_file_atomic(to, mf.data ? (const void *)mf.data : "", mf.size);
    dsc_unmap_file(&mf);
    return rc;
}

static dsc_status save_optimizer(const char *path, const dsc_model *m, adamw *opt) {
    st_writer *w;
    if (st_writer_create(&w)) return DSC_ERR;
    char name[160], stepbuf[32];
    int rc = DSC_OK;
    float *mo = adamw_first_moment(opt), *vo = adamw_second_moment(opt);
    for (int pass = 0; pass < 2 && rc == DSC_OK; pass++)
        for (int i = 0; i < m->n_descs && rc == DSC_OK; i++) {
            const tensor_desc *t = &m->descs[i];
            snprintf(name, sizeof name, "%s.%s", pass ? "exp_avg_sq" : "exp_avg", t->name);
            rc = st_writer_add(w, name, ST_F32, t->ndim, t->shape, (pass ? vo : mo) + t->offset);
        }
    snprintf(stepbuf, sizeof stepbuf, "%ld", adamw_steps(opt));
    if (rc == DSC_OK) rc = st_writer_set_metadata(w, "adamw_steps", stepbuf);
    if (rc == DSC_OK) rc = st_writer_write(w, path);
    st_writer_free(w);
    return rc;
}

static dsc_status save_state(const char *path, const ckpt_state *st, const char *hparams_json) {
    json_t *o = json_object();
    json_object_set_new(o, "format", json_string("dsc-checkpoint-1"));
    json_object_set_new(o, "step", json_integer(st->step));
    json_object_set_new(o, "tokens", json_integer((json_int_t)st->tokens));
    json_object_set_new(o, "elapsed_s", json_real(st->elapsed));
    char hex[32];
    snprintf(hex, sizeof hex, "%016" PRIx64, st->tokenizer_hash);
    json_object_set_new(o, "tokenizer_hash", json_string(hex));
    json_object_set_new(o, "loader", json_pack("{s:I, s:I, s:I}", "seed", (json_int_t)st->loader.seed, "epoch",
                                               (json_int_t)st->loader.epoch, "position",
                                               (json_int_t)st->loader.position));
    if (hparams_json) {
        json_error_t e;
        json_t *h = json_loads(hparams_json, 0, &e);
        if (h) json_object_set_new(o, "hparams", h);
    }
    char *text = json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(o);
    if (!text) return dsc_set_error("%s: could not format the state", path);
    int rc = dsc_write_file_atomic(path, text, strlen(text));
    free(text);
    return rc;
}

/* Test hook: DSC_TEST_KILL_IN_SAVE=N kills the process with SIGKILL in the middle of the save of
 * step N (after the weights, before the optimizer and the rename), as a crash would. */
static void maybe_die(long step) {
    const char *e = getenv("DSC_TEST_KILL_IN_SAVE");
    if (e && atol(e) == step) raise(SIGKILL);
}

static int is_step_dir(const char *name, long *step) {
    char tail;
    return sscanf(name, "step-%ld%c", step, &tail) == 1 && strlen(name) == 13;
}

/* Lists complete checkpoints (sorted by step). Returns the count (<= cap). */
static int list_steps(const char *root, long *steps, int cap) {
    DIR *d = opendir(root);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (n < cap && is_step_dir(e->d_name, &steps[n])) n++;
    closedir(d);
    for (int i = 1; i < n; i++) /* insertion sort: there are few */
        for (int j = i; j > 0 && steps[j] < steps[j - 1]; j--) {
            long t = steps[j];
            steps[j] = steps[j - 1];
            steps[j - 1] = t;
        }
    return n;
}

static void remove_stale_temporaries(const char *root) {
    DIR *d = opendir(root);
    if (!d) return;
    struct dirent *e;
    char p[4096];
    while ((e = readdir(d))) {
        if (!strncmp(e->d_name, ".step-", 6) && strstr(e->d_name, ".tmp")) {
            snprintf(p, sizeof p, "%s/%s", root, e->d_name);
            remove_dir(p);
        }
    }
    closedir(d);
}

dsc_status ckpt_save(const char *root, const dsc_model *m, adamw *opt, const ckpt_state *st,
                     const char *hparams_json, const char *tokenizer_path, int keep) {
    if (dsc_mkdir(root)) return DSC_ERR;
    remove_stale_temporaries(root);
    char tmp[4096], final[4096], p[4200];
    snprintf(tmp, sizeof tmp, "%s/." STEP_FMT ".tmp%ld", root, st->step, (long)getpid());
    snprintf(final, sizeof final, "%s/" STEP_FMT, root, st->step);
    remove_dir(tmp);
    if (mkdir(tmp, 0755) != 0) return dsc_set_error("%s: cannot create: %s", tmp, strerror(errno));
    if (dsc_model_save(m, tmp)) goto fail;
    maybe_die(st->step);
    snprintf(p, sizeof p, "%s/optimizer.safetensors", tmp);
    if (save_optimizer(p, m, opt)) goto fail;
    snprintf(p, sizeof p, "%s/state.json", tmp);
    if (save_state(p, st, hparams_json)) goto fail;
    if (tokenizer_path) {
        snprintf(p, sizeof p, "%s/tokenizer.json", tmp);
        if (copy_file(tokenizer_path, p)) goto fail;
    }
    fsync_path(tmp);
    remove_dir(final); /* a checkpoint of this step from an earlier, abandoned run */
    if (rename(tmp, final) != 0) {
        dsc_set_error("%s: cannot rename to %s: %s", tmp, final, strerror(errno));
        goto fail;
    }
    fsync_path(root);
    if (keep > 0) {
        long steps[4096];
        int n = list_steps(root, steps, 4096);
        for (int i = 0; i < n - keep; i++) {
            snprintf(p, sizeof p, "%s/" STEP_FMT, root, steps[i]);
            remove_dir(p);
        }
    }
    return DSC_OK;
fail:
    remove_dir(tmp);
    return DSC_ERR;
}

dsc_status ckpt_latest(const char *root, char *dir, size_t cap) {
    long steps[4096];
    int n = list_steps(root, steps, 4096);
    if (n == 0) return dsc_set_error("%s: no checkpoint to resume from (expected a step-NNNNNNNN directory)", root);
    snprintf(dir, cap, "%s/" STEP_FMT, root, steps[n - 1]);
    return DSC_OK;
}

static dsc_status load_optimizer(const char *path, const dsc_model *m, adamw *opt) {
    st_file *st;
    if (st_open(path, &st)) return DSC_ERR;
    char name[160];
    int rc = DSC_OK;
    float *mo = adamw_first_moment(opt), *vo = adamw_second_moment(opt);
    for (int pass = 0; pass < 2 && rc == DSC_OK; pass++)
        for (int i = 0; i < m->n_descs && rc == DSC_OK; i++) {
            const tensor_desc *t = &m->descs[i];
            snprintf(name, sizeof name, "%s.%s", pass ? "exp_avg_sq" : "exp_avg", t->name);
            const st_tensor *x = st_find(st, name);
            if (!x) {
                rc = dsc_set_error("%s: tensor '%s' is missing", path, name);
                break;
            }
            if (x->numel != t->numel || x->dtype != ST_F32) {
                rc = dsc_set_error("%s: tensor '%s': expected %zu F32 values, found %zu %s", path, name, t->numel,
                                   x->numel, st_dtype_name(x->dtype));
                break;
            }
            memcpy((pass ? vo : mo) + t->offset, x->data, t->numel * sizeof(float));
        }
    const char *steps = st_metadata(st, "adamw_steps");
    char *end = NULL;
    long t = steps ? strtol(steps, &end, 10) : -1;
    if (rc == DSC_OK && (!steps || *end || t < 0))
        rc = dsc_set_error("%s: metadata 'adamw_steps': expected a non-negative integer", path);
    if (rc == DSC_OK) adamw_set_steps(opt, t);
    st_close(st);
    return rc;
}

static int get_u64(json_t *o, const char *key, const char *path, uint64_t *out) {
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return dsc_set_error("%s: field '%s': expected a non-negative integer", path, key);
    *out = (uint64_t)json_integer_value(v);
    return DSC_OK;
}

static dsc_status load_state(const char *path, ckpt_state *st, char **hparams_json) {
    json_error_t e;
    json_t *o = json_load_file(path, JSON_REJECT_DUPLICATES, &e);
    if (!o) return dsc_set_error("%s: %s", path, e.text);
    int rc = DSC_OK;
    uint64_t step = 0;
    json_t *fmt = json_object_get(o, "format"), *ld = json_object_get(o, "loader");
    if (!json_is_string(fmt) || strcmp(json_string_value(fmt), "dsc-checkpoint-1"))
        rc = dsc_set_error("%s: field 'format': expected \"dsc-checkpoint-1\"", path);
    else if (get_u64(o, "step", path, &step) || get_u64(o, "tokens", path, &st->tokens))
        rc = DSC_ERR;
    else if (!json_is_object(ld))
        rc = dsc_set_error("%s: field 'loader': expected an object", path);
    else if (get_u64(ld, "seed", path, &st->loader.seed) || get_u64(ld, "epoch", path, &st->loader.epoch) ||
             get_u64(ld, "position", path, &st->loader.position))
        rc = dsc_prefix_error("loader");
    if (rc == DSC_OK) {
        st->step = (long)step;
        json_t *el = json_object_get(o, "elapsed_s"), *th = json_object_get(o, "tokenizer_hash");
        st->elapsed = json_is_number(el) ? json_number_value(el) : 0;
        st->tokenizer_hash = json_is_string(th) ? strtoull(json_string_value(th), NULL, 16) : 0;
        json_t *h = json_object_get(o, "hparams");
        if (hparams_json) *hparams_json = h ? json_dumps(h, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    }
    json_decref(o);
    return rc;
}

dsc_status ckpt_load(const char *dir, dsc_model **m, adamw **opt, ckpt_state *st, char **hparams_json) {
    char p[4200];
    *m = NULL;
    *opt = NULL;
    if (hparams_json) *hparams_json = NULL;
    memset(st, 0, sizeof *st);
    snprintf(p, sizeof p, "%s/state.json", dir);
    if (load_state(p, st, hparams_json)) return DSC_ERR;
    if (dsc_model_load(dir, m) || adamw_create(*m, opt)) goto fail;
    snprintf(p, sizeof p, "%s/optimizer.safetensors", dir);
    if (load_optimizer(p, *m, *opt)) goto fail;
    return DSC_OK;
fail:
    adamw_free(*opt);
    dsc_model_free(*m);
    *opt = NULL;
    *m = NULL;
    if (hparams_json) {
        free(*hparams_json);
        *hparams_json = NULL;
    }
    return DSC_ERR;
}

dsc_status ckpt_resolve_model(const char *dir, char *out, size_t cap) {
    char p[4200];
    snprintf(p, sizeof p, "%s/config.json", dir);
    FILE *f = fopen(p, "r");
    if (f) {
        fclose(f);
        snprintf(out, cap, "%s", dir);
        return DSC_OK;
    }
    if (ckpt_latest(dir, out, cap))
        return dsc_set_error("%s: not a model directory (no config.json) and no step-NNNNNNNN checkpoint in it", dir);
    return DSC_OK;
}
