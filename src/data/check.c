/* check.c: the rule-based checkers of generated problems (docs/DATA.md, "Checkers") and the
 * small recursive-descent parser they use: integers, + - * / (and × ÷ −), parentheses, evaluated
 * with exact 64-bit rationals (128-bit intermediates; overflow is reported, never wrapped).
 * Nothing here trusts the response: every path ends in a verdict, none in a crash. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "data/synth.h"

#define MAX_DEPTH 64

typedef __int128 i128;

typedef struct {
    const char *s;
    size_t len, pos;
    int depth;
    bool allow_unary;
    int64_t *lits;
    int max_lits, n_lits;
    char *err;
    size_t err_cap;
    bool failed;
} parser;

static bool fail(parser *p, const char *fmt, const char *what) {
    if (!p->failed) snprintf(p->err, p->err_cap, fmt, what);
    p->failed = true;
    return false;
}

static void skip_space(parser *p) {
    while (p->pos < p->len && strchr(" \t\r\n", p->s[p->pos]) && p->s[p->pos]) p->pos++;
}

/* The operator at the cursor ('+', '-', '*', '/', or 0), with its byte length; Unicode × ÷ −
 * count as * / -. */
static char peek_op(parser *p, size_t *n) {
    skip_space(p);
    const unsigned char *c = (const unsigned char *)p->s + p->pos;
    size_t left = p->len - p->pos;
    if (left >= 1 && strchr("+-*/", c[0]) && c[0]) {
        *n = 1;
        return (char)c[0];
    }
    if (left >= 2 && c[0] == 0xC3 && c[1] == 0x97) { *n = 2; return '*'; }          /* × */
    if (left >= 2 && c[0] == 0xC3 && c[1] == 0xB7) { *n = 2; return '/'; }          /* ÷ */
    if (left >= 3 && c[0] == 0xE2 && c[1] == 0x88 && c[2] == 0x92) { *n = 3; return '-'; } /* − */
    *n = 0;
    return 0;
}

static i128 gcd128(i128 a, i128 b) {
    if (a < 0) a = -a;
    if (b < 0) b = -b;
    while (b) {
        i128 t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* num/den (den != 0) reduced into a 64-bit rational, or false on overflow. */
static bool make_rational(parser *p, i128 num, i128 den, dsc_rational *out) {
    if (den < 0) {
        num = -num;
        den = -den;
    }
    i128 g = gcd128(num, den);
    if (g > 1) {
        num /= g;
        den /= g;
    }
    if (num > INT64_MAX || num < -INT64_MAX || den > INT64_MAX) return fail(p, "%s", "overflow: a value exceeds 64 bits");
    out->num = (int64_t)num;
    out->den = (int64_t)den;
    return true;
}

static bool parse_expr(parser *p, dsc_rational *out);

static bool parse_factor(parser *p, dsc_rational *out) {
    skip_space(p);
    if (p->pos >= p->len) return fail(p, "%s", "syntax: expression ends where a number was expected");
    char c = p->s[p->pos];
    if (c == '(') {
        if (++p->depth > MAX_DEPTH) return fail(p, "%s", "syntax: parentheses nested deeper than 64");
        p->pos++;
        if (!parse_expr(p, out)) return false;
        skip_space(p);
        if (p->pos >= p->len || p->s[p->pos] != ')') return fail(p, "%s", "syntax: unbalanced parentheses, ')' missing");
        p->pos++;
        p->depth--;
        return true;
    }
    if (c >= '0' && c <= '9') {
        i128 v = 0;
        int digits = 0;
        while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') {
            v = v * 10 + (p->s[p->pos++] - '0');
            if (v > 0 && ++digits > 18) return fail(p, "%s", "overflow: a number has more than 18 digits");
        }
        if (p->n_lits < p->max_lits) p->lits[p->n_lits] = (int64_t)v;
        p->n_lits++;
        out->num = (int64_t)v;
        out->den = 1;
        return true;
    }
    size_t n;
    if (peek_op(p, &n) == '-') {
        if (!p->allow_unary) return fail(p, "%s", "syntax: unary minus is not allowed");
        if (++p->depth > MAX_DEPTH) return fail(p, "%s", "syntax: nested deeper than 64");
        p->pos += n;
        dsc_rational x;
        if (!parse_factor(p, &x)) return false;
        p->depth--;
        out->num = -x.num;
        out->den = x.den;
        return true;
    }
    char what[8];
    snprintf(what, sizeof what, "%c", (unsigned char)c >= 0x20 && (unsigned char)c < 0x7f ? c : '?');
    return fail(p, "syntax: unexpected character '%s' where a number was expected", what);
}

static bool parse_term(parser *p, dsc_rational *out) {
    if (!parse_factor(p, out)) return false;
    for (;;) {
        size_t n;
        char op = peek_op(p, &n);
        if (op != '*' && op != '/') return true;
        p->pos += n;
        dsc_rational b;
        if (!parse_factor(p, &b)) return false;
        if (op == '*') {
            if (!make_rational(p, (i128)out->num * b.num, (i128)out->den * b.den, out)) return false;
        } else {
            if (b.num == 0) return fail(p, "%s", "division by zero");
            if (!make_rational(p, (i128)out->num * b.den, (i128)out->den * b.num, out)) return false;
        }
    }
}

static bool parse_expr(parser *p, dsc_rational *out) {
    if (!parse_term(p, out)) return false;
    for (;;) {
        size_t n;
        char op = peek_op(p, &n);
        if (op != '+' && op != '-') return true;
        p->pos += n;
        dsc_rational b;
        if (!parse_term(p, &b)) return false;
        i128 l = (i128)out->num * b.den, r = (i128)b.num * out->den;
        if (!make_rational(p, op == '+' ? l + r : l - r, (i128)out->den * b.den, out)) return false;
    }
}

bool dsc_expr_eval(const char *s, size_t len, bool allow_unary, dsc_rational *out, int64_t *lits, int max_lits,
                   int *n_lits, char *err, size_t err_cap) {
    char dummy[8];
    parser p = {s, len, 0, 0, allow_unary, lits, lits ? max_lits : 0, 0, err ? err : dummy,
                err ? err_cap : sizeof dummy, false};
    out->num = 0;
    out->den = 1;
    if (n_lits) *n_lits = 0;
    if (memchr(s, 0, len)) return fail(&p, "%s", "syntax: NUL byte in the expression");
    bool ok = parse_expr(&p, out);
    if (ok) {
        skip_space(&p);
        if (p.pos < p.len) {
            ok = fail(&p, "%s", p.s[p.pos] == ')' ? "syntax: unbalanced parentheses, extra ')'"
                                                 : "syntax: unexpected text after the expression");
        }
    }
    if (n_lits) *n_lits = p.n_lits;
    return ok;
}

/* ---------------------------------------------------------------------------------------------
 * Checkers
 * ------------------------------------------------------------------------------------------- */
static const char EOS_TEXT[] = "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>";

static void verdict(dsc_check_result *r, bool parsed, bool correct, const char *reason) {
    r->parsed = parsed;
    r->correct = correct;
    snprintf(r->reason, sizeof r->reason, "%s", correct ? "" : reason);
}

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* The final answer's span inside the response, per the rules in synth.h; false if unfinished. */
static bool answer_span(const char *resp, const char **b, const char **e) {
    const char *s = resp, *t, *last = NULL;
    for (t = strstr(s, "</think>"); t; t = strstr(t + 1, "</think>")) last = t;
    if (last) s = last + strlen("</think>");
    else if (strstr(resp, "<think>")) return false;
    const char *end = s + strlen(s);
    for (;;) {
        while (end > s && is_space(end[-1])) end--;
        size_t n = sizeof EOS_TEXT - 1;
        if ((size_t)(end - s) >= n && !memcmp(end - n, EOS_TEXT, n)) end -= n;
        else break;
    }
    while (s < end && is_space(*s)) s++;
    *b = s;
    *e = end;
    return true;
}

/* "-?[0-9]+" compared as an integer with the reference text (leading zeros ignored). */
static void check_arithmetic(const dsc_problem *p, const char *b, const char *e, dsc_check_result *r) {
    const char *q = b;
    bool neg = q < e && *q == '-';
    if (neg) q++;
    if (q == e) return verdict(r, false, false, "format: the answer is not an integer");
    for (const char *c = q; c < e; c++)
        if (*c < '0' || *c > '9') return verdict(r, false, false, "format: the answer is not one integer (extra text?)");
    while (q + 1 < e && *q == '0') q++;
    bool zero = (e - q == 1 && *q == '0');
    const char *ref = p->answer;
    bool rneg = *ref == '-';
    if (rneg) ref++;
    while (ref[0] == '0' && ref[1]) ref++;
    bool rzero = !strcmp(ref, "0");
    bool ok = (size_t)(e - q) == strlen(ref) && !memcmp(q, ref, (size_t)(e - q)) && (neg == rneg || (zero && rzero));
    verdict(r, true, ok, "wrong value");
}

static void check_countdown(const dsc_problem *p, const char *b, const char *e, dsc_check_result *r) {
    /* optional "= <target>" at the end */
    const char *eq = memchr(b, '=', (size_t)(e - b));
    const char *expr_end = eq ? eq : e;
    if (eq) {
        const char *q = eq + 1;
        while (q < e && is_space(*q)) q++;
        if (q == e) return verdict(r, false, false, "format: nothing after '='");
        long long v = 0;
        for (const char *c = q; c < e; c++) {
            if (*c < '0' || *c > '9' || v > 1000000000000LL)
                return verdict(r, false, false, "format: '=' must be followed by the target only");
            v = v * 10 + (*c - '0');
        }
        if (v != p->target) return verdict(r, true, false, "the stated result is not the target");
    }
    int64_t lits[64];
    int n_lits;
    dsc_rational v;
    char err[128];
    if (!dsc_expr_eval(b, (size_t)(expr_end - b), false, &v, lits, 64, &n_lits, err, sizeof err)) {
        bool arith_error = !strncmp(err, "division", 8) || !strncmp(err, "overflow", 8);
        return verdict(r, arith_error, false, err);
    }
    if (n_lits > p->n_numbers) return verdict(r, true, false, "more numbers used than given");
    bool used[DSC_COUNTDOWN_MAX_NUMBERS] = {false};
    for (int i = 0; i < n_lits; i++) {
        int j = 0;
        while (j < p->n_numbers && (used[j] || p->numbers[j] != lits[i])) j++;
        if (j == p->n_numbers) {
            bool given = false;
            for (int k = 0; k < p->n_numbers; k++) given |= p->numbers[k] == lits[i];
            char msg[96];
            snprintf(msg, sizeof msg, given ? "number %lld used more often than given" : "number %lld is not given",
                     (long long)lits[i]);
            return verdict(r, true, false, msg);
        }
        used[j] = true;
    }
    verdict(r, true, v.den == 1 && v.num == p->target, "the expression does not equal the target");
}

dsc_status dsc_synth_check(const dsc_problem *p, const char *response, dsc_check_result *out) {
    if (!p || !response || !out) return dsc_set_error("dsc_synth_check: NULL argument");
    const char *b, *e;
    if (!answer_span(response, &b, &e)) {
        verdict(out, false, false, "format: <think> without </think>");
        return DSC_OK;
    }
    if (b == e) {
        verdict(out, false, false, "format: empty answer");
        return DSC_OK;
    }
    if (p->task == DSC_TASK_ARITHMETIC) check_arithmetic(p, b, e, out);
    else if (p->task == DSC_TASK_COUNTDOWN) check_countdown(p, b, e, out);
    else return dsc_set_error("dsc_synth_check: unknown task %d", (int)p->task);
    return DSC_OK;
}
