/* hfindex.c: parsing and validating model.safetensors.index.json (see hfindex.h). Everything is
 * checked before anything is returned: the caller gets either a complete, sorted, duplicate-free
 * map or one error line naming the index and the offending tensor or file. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "io/hfindex.h"

static const char *kind(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

/* A shard must be a plain file name in the checkpoint's directory. NULL when it is, else why not. */
static const char *bad_file_name(const char *f) {
    size_t n = strlen(f);
    if (n == 0) return "is empty";
    if (n > 255) return "is longer than 255 bytes";
    if (!strcmp(f, ".") || !strcmp(f, "..")) return "is not a file name";
    for (const unsigned char *p = (const unsigned char *)f; *p; p++) {
        if (*p == '/' || *p == '\\') return "is a path, not a plain file name in the directory";
        if (*p < 0x20 || *p == 0x7f) return "contains a control character";
    }
    return NULL;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }
static int cmp_entry(const void *a, const void *b) {
    return strcmp(((const hfindex_entry *)a)->name, ((const hfindex_entry *)b)->name);
}

void hfindex_free(hfindex *ix) {
    if (!ix) return;
    free(ix->files);
    free(ix->entries);
    free(ix->names);
    free(ix);
}

static int parse_metadata(const json_t *meta, const char *name, hfindex *ix) {
    ix->total_size = -1;
    if (!meta) return DSC_OK;
    if (!json_is_object(meta)) return dsc_set_error("%s: 'metadata' must be an object, found %s", name, kind(meta));
    const json_t *ts = json_object_get(meta, "total_size");
    if (!ts || json_is_null(ts)) return DSC_OK;
    if (json_is_integer(ts) && json_integer_value(ts) >= 0) {
        ix->total_size = json_integer_value(ts);
        return DSC_OK;
    }
    double v = json_is_real(ts) ? json_real_value(ts) : -1;
    if (v >= 0 && v < 9.0e18 && v == (double)(int64_t)v) { /* some writers emit 1.5e10 */
        ix->total_size = (int64_t)v;
        return DSC_OK;
    }
    return dsc_set_error("%s: 'metadata.total_size' must be a non-negative integer, found %s", name, kind(ts));
}

/* Fills ix from a parsed root; the strings are copied into one allocation. */
static int build(const json_t *root, const char *name, hfindex *ix) {
    if (!json_is_object(root)) return dsc_set_error("%s: the index must be a JSON object, found %s", name, kind(root));
    if (parse_metadata(json_object_get(root, "metadata"), name, ix)) return DSC_ERR;
    const json_t *map = json_object_get(root, "weight_map");
    if (!map) return dsc_set_error("%s: field 'weight_map' is missing (expected an object of tensor -> file)", name);
    if (!json_is_object(map))
        return dsc_set_error("%s: 'weight_map' must be an object of tensor -> file, found %s", name, kind(map));
    size_t n = json_object_size(map);
    if (n == 0) return dsc_set_error("%s: 'weight_map' lists no tensors", name);
    if (n > (size_t)1 << 26) return dsc_set_error("%s: 'weight_map' lists %zu tensors (limit 67108864)", name, n);

    size_t bytes = 0;
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)map, key, val) {
        if (!key[0]) return dsc_set_error("%s: 'weight_map' has an empty tensor name", name);
        if (!json_is_string(val))
            return dsc_set_error("%s: tensor '%.200s': the file must be a string, found %s", name, key, kind(val));
        const char *why = bad_file_name(json_string_value(val));
        if (why)
            return dsc_set_error("%s: tensor '%.200s': shard '%.200s' %s", name, key, json_string_value(val), why);
        bytes += strlen(key) + 1 + json_string_length(val) + 1;
    }
    ix->names = malloc(bytes);
    ix->entries = malloc(n * sizeof *ix->entries);
    char **files = malloc(n * sizeof *files);
    ix->files = malloc(n * sizeof *ix->files);
    if (!ix->names || !ix->entries || !files || !ix->files) {
        free(files);
        return dsc_set_error("%s: out of memory for %zu tensors", name, n);
    }
    /* copy every name and every file name (with repeats), then deduplicate the files */
    char *p = ix->names;
    size_t i = 0;
    json_object_foreach((json_t *)map, key, val) {
        size_t k = strlen(key) + 1, f = json_string_length(val) + 1;
        memcpy(p, key, k);
        ix->entries[i].name = p;
        p += k;
        memcpy(p, json_string_value(val), f);
        files[i] = p;
        p += f;
        i++;
    }
    ix->n_entries = (int)n;
    char **sorted = malloc(n * sizeof *sorted);
    if (!sorted) {
        free(files);
        return dsc_set_error("%s: out of memory for %zu tensors", name, n);
    }
    memcpy(sorted, files, n * sizeof *files);
    qsort(sorted, n, sizeof *sorted, cmp_str);
    int nf = 0;
    for (size_t j = 0; j < n; j++)
        if (nf == 0 || strcmp(ix->files[nf - 1], sorted[j])) ix->files[nf++] = sorted[j];
    ix->n_files = nf;
    free(sorted);
    for (size_t j = 0; j < n; j++) {
        char **hit = bsearch(&files[j], ix->files, (size_t)nf, sizeof *ix->files, cmp_str);
        ix->entries[j].file = (int)(hit - ix->files);
    }
    free(files);
    qsort(ix->entries, n, sizeof *ix->entries, cmp_entry);
    /* jansson rejects repeated keys already; kept as a guard for the map's invariant */
    for (size_t j = 1; j < n; j++)
        if (!strcmp(ix->entries[j - 1].name, ix->entries[j].name))
            return dsc_set_error("%s: tensor '%.200s' is listed twice", name, ix->entries[j].name);
    return DSC_OK;
}

dsc_status hfdir_parse_index(const char *text, size_t len, const char *name, hfindex **out) {
    *out = NULL;
    if (!name) name = "model.safetensors.index.json";
    if (!text) text = "", len = 0; /* an empty file maps to NULL */
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        if (strstr(jerr.text, "duplicate object key")) {
            /* jansson stops right after the repeated key's closing quote; show the key */
            size_t end = (size_t)jerr.position, start = end;
            if (end >= 2 && end <= len && text[end - 1] == '"') {
                start = end - 1;
                while (start > 0 && !(text[start - 1] == '"' && (start < 2 || text[start - 2] != '\\'))) start--;
            }
            if (start > 0 && start < end)
                return dsc_set_error("%s: line %d: '%.*s' is listed twice", name, jerr.line,
                                     (int)(end - 1 - start > 200 ? 200 : end - 1 - start), text + start);
            return dsc_set_error("%s: line %d column %d: a tensor (or field) is listed twice (%s)", name, jerr.line,
                                 jerr.column, jerr.text);
        }
        return dsc_set_error("%s: not valid JSON (line %d column %d: %s)", name, jerr.line, jerr.column, jerr.text);
    }
    hfindex *ix = calloc(1, sizeof *ix);
    if (!ix) {
        json_decref(root);
        return dsc_set_error("%s: out of memory", name);
    }
    int rc = build(root, name, ix);
    json_decref(root);
    if (rc) {
        hfindex_free(ix);
        return DSC_ERR;
    }
    *out = ix;
    return DSC_OK;
}

int hfindex_find(const hfindex *ix, const char *tensor) {
    int lo = 0, hi = ix->n_entries - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(ix->entries[mid].name, tensor);
        if (c == 0) return mid;
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}
