/* synth_arith.c: the arithmetic task: a + b, a - b, a * b with 1..max_digits-digit operands
 * (either may be negative), worked the way it is taught: the signs reduced to an operation on
 * sizes, then columns with carries or borrows, or long multiplication by partial products (each
 * digit written with its carry, the partial products summed by columns like an addition).
 * Every reasoning line is "label: equation, equation, note" so tests can re-check each step. */
#include <string.h>

#include "base/error.h"
#include "data/synth_internal.h"

/* A non-negative decimal number, digits little-endian (d[0] = ones), no leading zeros. */
#define DEC_MAX 40
typedef struct {
    int n;
    unsigned char d[DEC_MAX];
} dec;

static void dec_norm(dec *x) {
    while (x->n > 1 && x->d[x->n - 1] == 0) x->n--;
}

static void dec_str(const dec *x, char *out) {
    for (int i = 0; i < x->n; i++) out[i] = (char)('0' + x->d[x->n - 1 - i]);
    out[x->n] = 0;
}

static int dec_cmp(const dec *a, const dec *b) {
    if (a->n != b->n) return a->n < b->n ? -1 : 1;
    for (int i = a->n - 1; i >= 0; i--)
        if (a->d[i] != b->d[i]) return a->d[i] < b->d[i] ? -1 : 1;
    return 0;
}

static bool dec_zero(const dec *x) { return x->n == 1 && x->d[0] == 0; }

static unsigned char digit_at(const dec *x, int i) { return i < x->n ? x->d[i] : 0; }

/* s = a + b, one "column k" line each. */
static void add_columns(sbuf *sb, const dec *a, const dec *b, dec *s) {
    int n = a->n > b->n ? a->n : b->n, carry = 0;
    for (int i = 0; i < n; i++) {
        int x = digit_at(a, i), y = digit_at(b, i), t = x + y + carry;
        if (carry) sb_printf(sb, "column %d: %d + %d + %d = %d, write %d, carry %d\n", i + 1, x, y, carry, t, t % 10, t / 10);
        else sb_printf(sb, "column %d: %d + %d = %d, write %d, carry %d\n", i + 1, x, y, t, t % 10, t / 10);
        s->d[i] = (unsigned char)(t % 10);
        carry = t / 10;
    }
    s->n = n;
    if (carry) {
        s->d[n] = (unsigned char)carry;
        s->n = n + 1;
        sb_printf(sb, "the last carry %d becomes the leading digit\n", carry);
    }
}

/* s = a - b for a >= b, one "column k" line each (a borrowed 1 is subtracted last). */
static void sub_columns(sbuf *sb, const dec *a, const dec *b, dec *s) {
    int borrow = 0;
    for (int i = 0; i < a->n; i++) {
        int x = a->d[i], y = digit_at(b, i), t = x - y - borrow;
        int out = t < 0 ? t + 10 : t, next = t < 0;
        char in[16] = "";
        if (borrow) snprintf(in, sizeof in, " - %d", borrow);
        if (next) sb_printf(sb, "column %d: 10 + %d - %d%s = %d, borrow 1 from column %d\n", i + 1, x, y, in, out, i + 2);
        else sb_printf(sb, "column %d: %d - %d%s = %d, no borrow\n", i + 1, x, y, in, out);
        s->d[i] = (unsigned char)out;
        borrow = next;
    }
    s->n = a->n;
    int before = s->n;
    dec_norm(s);
    if (s->n < before) sb_printf(sb, "drop the leading zeros\n");
}

/* p = a * b by partial products: a line per digit of b, then the column addition of each
 * partial product to the sum so far. */
static void mul_long(sbuf *sb, const dec *a, const dec *b, dec *p) {
    char as[DEC_MAX + 1], ps[DEC_MAX + 2], ss[DEC_MAX + 2], ts[DEC_MAX + 2];
    dec_str(a, as);
    dec total = {1, {0}};
    bool have = false;
    for (int k = 0; k < b->n; k++) {
        int y = b->d[k];
        if (y == 0) {
            sb_printf(sb, "digit %d of the multiplier is 0: nothing to add\n", k + 1);
            continue;
        }
        /* partial = a * y, worked digit by digit */
        dec part = {0, {0}};
        int carry = 0;
        if (a->n > 1) sb_printf(sb, "%s * %d: ", as, y);
        for (int i = 0; i < a->n; i++) {
            int t = a->d[i] * y + carry;
            part.d[i] = (unsigned char)(t % 10);
            if (a->n == 1) break;
            if (carry) sb_printf(sb, "%d * %d + %d = %d, ", a->d[i], y, carry, t);
            else sb_printf(sb, "%d * %d = %d, ", a->d[i], y, t);
            /* the digit written and the carry, as in the columns of an addition */
            if (i + 1 < a->n) sb_printf(sb, "write %d, carry %d, ", t % 10, t / 10);
            else sb_printf(sb, "write %d, ", t);
            carry = t / 10;
        }
        part.n = a->n;
        if (a->n == 1) carry = (a->d[0] * y) / 10;
        if (carry) part.d[part.n++] = (unsigned char)carry;
        dec_norm(&part);
        dec_str(&part, ps);
        sb_printf(sb, a->n > 1 ? "so %s * %d = %s\n" : "%s * %d = %s\n", as, y, ps);
        /* shifted by k places */
        if (k > 0 && !dec_zero(&part)) {
            memmove(part.d + k, part.d, (size_t)part.n);
            memset(part.d, 0, (size_t)k);
            part.n += k;
            dec_str(&part, ps);
            char ys[24];
            snprintf(ys, sizeof ys, "%d", y);
            sb_printf(sb, "shifted %d place%s: %s * %s%.*s = %s\n", k, k > 1 ? "s" : "", as, ys, k,
                      "000000000000000000000000000000000000000", ps);
        }
        if (!have) {
            total = part;
            have = true;
            continue;
        }
        /* the running sum by columns, exactly as an addition problem is worked */
        dec sum = {0, {0}};
        dec_str(&total, ts);
        sb_printf(sb, "add the partial products %s + %s column by column, from the ones digit\n", ts, ps);
        add_columns(sb, &total, &part, &sum);
        dec_str(&sum, ss);
        sb_printf(sb, "so %s + %s = %s\n", ts, ps, ss);
        total = sum;
    }
    *p = total;
}

/* A random number with exactly `digits` digits (a single digit may be 0). */
static void draw_dec(dsc_rng *r, int digits, dec *x) {
    x->n = digits;
    for (int i = 0; i < digits; i++) x->d[i] = (unsigned char)(dsc_rng_u64(r) % 10);
    if (digits > 1) x->d[digits - 1] = (unsigned char)(1 + dsc_rng_u64(r) % 9);
}

/* "-123", "45", or "(-123)" when it stands as the second operand. */
static void signed_str(const dec *x, bool neg, bool paren, char *out) {
    char s[DEC_MAX + 1];
    dec_str(x, s);
    if (!neg) strcpy(out, s);
    else if (paren) sprintf(out, "(-%s)", s);
    else sprintf(out, "-%s", s);
}

int synth_arithmetic_draw(dsc_rng *r, const dsc_synth_options *o, dsc_split split, dsc_problem *p) {
    memset(p, 0, sizeof *p);
    p->task = DSC_TASK_ARITHMETIC;
    static const char ops[3] = {'+', '-', '*'};
    char op = ops[dsc_rng_u64(r) % 3];
    dec a, b;
    draw_dec(r, 1 + (int)(dsc_rng_u64(r) % (uint64_t)o->max_digits), &a);
    draw_dec(r, 1 + (int)(dsc_rng_u64(r) % (uint64_t)o->max_digits), &b);
    bool an = !dec_zero(&a) && dsc_rng_u64(r) % 4 == 0, bn = !dec_zero(&b) && dsc_rng_u64(r) % 4 == 0;
    char A[DEC_MAX + 4], B[DEC_MAX + 4], As[DEC_MAX + 1], Bs[DEC_MAX + 1];
    signed_str(&a, an, false, A);
    signed_str(&b, bn, true, B);
    dec_str(&a, As);
    dec_str(&b, Bs);
    snprintf(p->prompt, sizeof p->prompt, "What is %s %c %s?", A, op, B);
    if ((split == DSC_SPLIT_HELDOUT) != dsc_synth_is_heldout(p)) return 0;

    sbuf sb;
    sb_init(&sb, p->reasoning, sizeof p->reasoning);
    dec res;
    bool neg;
    if (op == '*') {
        neg = an != bn;
        if (an || bn)
            sb_printf(&sb, "%s: %s * %s = %s(%s * %s)\n",
                      neg ? "the signs differ, so the product is negative" : "both are negative, so the product is positive",
                      A, B, neg ? "-" : "", As, Bs);
        /* the longer number on top, multiplied by each digit of the shorter */
        bool swap = b.n > a.n;
        const dec *top = swap ? &b : &a, *low = swap ? &a : &b;
        const char *Ts = swap ? Bs : As, *Ls = swap ? As : Bs;
        if (swap) sb_printf(&sb, "the longer number goes first: %s * %s = %s * %s\n", As, Bs, Ts, Ls);
        sb_printf(&sb, "multiply %s * %s by long multiplication, one digit of %s at a time\n", Ts, Ls, Ls);
        mul_long(&sb, top, low, &res);
        char rs[DEC_MAX + 2];
        dec_str(&res, rs);
        if (low->n > 1) sb_printf(&sb, "so %s * %s = %s\n", Ts, Ls, rs);
    } else {
        /* x + y with y = +-b: reduce to sizes */
        bool yn = (op == '-') ? !bn : bn;
        if (op == '-' && bn) sb_printf(&sb, "subtracting a negative number adds its size: %s - %s = %s + %s\n", A, B, A, Bs);
        bool add = an == yn; /* same signs: add sizes */
        char rs[DEC_MAX + 2];
        if (add) {
            neg = an;
            if (neg) sb_printf(&sb, "both terms are negative: %s %c %s = -(%s + %s)\n", A, op, B, As, Bs);
            sb_printf(&sb, "add %s + %s column by column, from the ones digit\n", As, Bs);
            add_columns(&sb, &a, &b, &res);
            dec_str(&res, rs);
            sb_printf(&sb, "so %s + %s = %s\n", As, Bs, rs);
        } else {
            bool a_big = dec_cmp(&a, &b) >= 0;
            const dec *L = a_big ? &a : &b, *S = a_big ? &b : &a;
            const char *Ls = a_big ? As : Bs, *Ss = a_big ? Bs : As;
            neg = a_big ? an : yn;
            if (dec_cmp(&a, &b) == 0) neg = false;
            if (!(op == '-' && !an && !bn && a_big))
                sb_printf(&sb, neg ? "the signs differ: %s %c %s = -(%s - %s)\n" : "the signs differ: %s %c %s = %s - %s\n",
                          A, op, B, Ls, Ss);
            sb_printf(&sb, "subtract %s - %s column by column, from the ones digit (a borrowed 1 is subtracted last)\n",
                      Ls, Ss);
            sub_columns(&sb, L, S, &res);
            dec_str(&res, rs);
            sb_printf(&sb, "so %s - %s = %s\n", Ls, Ss, rs);
        }
    }
    if (dec_zero(&res)) neg = false;
    char R[DEC_MAX + 4];
    signed_str(&res, neg, false, R);
    sb_printf(&sb, "answer: %s %c %s = %s", A, op, B, R);
    if (sb.overflow) {
        dsc_set_error("arithmetic: the worked steps of '%s' exceed %zu bytes", p->prompt, sizeof p->reasoning);
        return -1;
    }
    snprintf(p->answer, sizeof p->answer, "%s", R);
    return 1;
}
