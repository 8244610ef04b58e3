/* synth_countdown.c: the countdown task: reach a target from 3-6 given numbers with + - * /,
 * each number used at most once, every intermediate result a positive integer. The target comes
 * from a random combination of some of the numbers; an iterative-deepening search then finds a
 * shortest solution (the proof that the problem is solvable), which becomes the worked steps and
 * the answer expression. Problems whose shortest solution is shorter than min_steps are redrawn. */
#include <string.h>

#include "base/error.h"
#include "data/synth_internal.h"

#define MAXN DSC_COUNTDOWN_MAX_NUMBERS
#define MAX_VALUE 1000000000LL  /* intermediate results stay below this */

/* An expression tree: leaves are given numbers, inner nodes one operation. */
typedef struct {
    char op;            /* 0 for a leaf */
    int left, right;    /* node indices */
    int64_t value;
} node;

typedef struct {
    node nodes[2 * MAXN];
    int n_nodes;
    int64_t target;
    /* the solution path: step k combined nodes a[k], b[k] with op[k] into node out[k] */
    int steps, path_a[MAXN], path_b[MAXN], path_out[MAXN];
    long long visited;
} search;

/* Applies op to x, y (x >= y for - and /); false when the result is not a useful positive integer. */
static bool apply(char op, int64_t x, int64_t y, int64_t *out) {
    switch (op) {
    case '+': *out = x + y; return *out < MAX_VALUE;
    case '-': *out = x - y; return *out > 0;
    case '*': if (x == 1 || y == 1 || x > MAX_VALUE / y) return false; *out = x * y; return true;
    case '/': if (y == 1 || x % y) return false; *out = x / y; return true;
    }
    return false;
}

/* Depth-first search for the target using at most `depth` more operations on the live nodes. */
static bool dfs(search *s, int *live, int n_live, int depth) {
    static const char ops[4] = {'+', '-', '*', '/'};
    s->visited++;
    for (int i = 0; i < n_live; i++)
        for (int j = i + 1; j < n_live; j++) {
            int a = live[i], b = live[j];
            if (s->nodes[a].value < s->nodes[b].value) {
                int t = a;
                a = b;
                b = t;
            }
            for (int k = 0; k < 4; k++) {
                int64_t v;
                if (!apply(ops[k], s->nodes[a].value, s->nodes[b].value, &v)) continue;
                int id = s->n_nodes++;
                s->nodes[id] = (node){ops[k], a, b, v};
                int step = s->steps++;
                s->path_a[step] = a;
                s->path_b[step] = b;
                s->path_out[step] = id;
                if (v == s->target) return true;
                if (depth > 1) {
                    int next[MAXN], m = 0;
                    for (int q = 0; q < n_live; q++)
                        if (q != i && q != j) next[m++] = live[q];
                    next[m++] = id;
                    if (dfs(s, next, m, depth - 1)) return true;
                }
                s->steps--;
                s->n_nodes--;
            }
        }
    return false;
}

static int prec(char op) { return op == '+' || op == '-' ? 1 : op ? 2 : 3; }

/* The expression of node i with the fewest parentheses that keep its value. */
static void print_expr(const search *s, int i, sbuf *b) {
    const node *n = &s->nodes[i];
    if (!n->op) {
        sb_printf(b, "%lld", (long long)n->value);
        return;
    }
    const node *l = &s->nodes[n->left], *r = &s->nodes[n->right];
    bool pl = prec(l->op) < prec(n->op);
    bool pr = prec(r->op) < prec(n->op) || (prec(r->op) == prec(n->op) && (n->op == '-' || n->op == '/'));
    if (pl) sb_printf(b, "(");
    print_expr(s, n->left, b);
    sb_printf(b, pl ? ") %c " : " %c ", n->op);
    if (pr) sb_printf(b, "(");
    print_expr(s, n->right, b);
    if (pr) sb_printf(b, ")");
}

static void list_numbers(sbuf *b, const int64_t *v, int n) {
    for (int i = 0; i < n; i++) sb_printf(b, i ? ", %lld" : "%lld", (long long)v[i]);
}

/* A random target reachable from a random subset of min_steps+1..n of the numbers (positive
 * integer steps); returns the subset size used or 0 if this attempt found none in range. */
static int draw_target(dsc_rng *r, const dsc_synth_options *o, const int64_t *nums, int n, int64_t *target) {
    int idx[MAXN];
    for (int i = 0; i < n; i++) idx[i] = i;
    dsc_rng_shuffle(r, idx, n);
    int least = o->min_steps + 1, m = least + (int)(dsc_rng_u64(r) % (uint64_t)(n - least + 1));
    int64_t pool[MAXN];
    for (int i = 0; i < m; i++) pool[i] = nums[idx[i]];
    for (int live = m; live > 1; live--) {
        int i = (int)(dsc_rng_u64(r) % (uint64_t)live), j = (int)(dsc_rng_u64(r) % (uint64_t)(live - 1));
        if (j >= i) j++;
        int64_t x = pool[i] > pool[j] ? pool[i] : pool[j], y = pool[i] > pool[j] ? pool[j] : pool[i], v = 0;
        static const char ops[4] = {'+', '-', '*', '/'};
        int k0 = (int)(dsc_rng_u64(r) % 4), k = 0;
        for (; k < 4 && !apply(ops[(k0 + k) % 4], x, y, &v); k++) {}
        if (k == 4) return 0; /* e.g. 1 and 1 */
        int hi = i > j ? i : j, lo = i > j ? j : i;
        pool[lo] = v;
        pool[hi] = pool[live - 1];
    }
    *target = pool[0];
    if (*target < 10 || *target > o->max_target) return 0;
    for (int i = 0; i < n; i++)
        if (nums[i] == *target) return 0;
    return m;
}

int synth_countdown_draw(dsc_rng *r, const dsc_synth_options *o, dsc_split split, dsc_problem *p) {
    memset(p, 0, sizeof *p);
    p->task = DSC_TASK_COUNTDOWN;
    int n = o->min_numbers + (int)(dsc_rng_u64(r) % (uint64_t)(o->max_numbers - o->min_numbers + 1));
    p->n_numbers = n;
    for (int i = 0; i < n; i++) p->numbers[i] = 1 + (int64_t)(dsc_rng_u64(r) % (uint64_t)o->max_number);
    int m = 0;
    for (int t = 0; t < 64 && !m; t++) m = draw_target(r, o, p->numbers, n, &p->target);
    if (!m) return 0; /* another attempt draws new numbers */
    if ((split == DSC_SPLIT_HELDOUT) != dsc_synth_is_heldout(p)) return 0;

    /* the proof: a shortest solution, by iterative deepening (a solution with m-1 steps exists) */
    search s;
    memset(&s, 0, sizeof s);
    s.target = p->target;
    int live[MAXN];
    for (int i = 0; i < n; i++) {
        s.nodes[i] = (node){0, -1, -1, p->numbers[i]};
        live[i] = i;
    }
    s.n_nodes = n;
    bool found = false;
    for (int depth = 1; depth <= m - 1 && !found; depth++) found = dfs(&s, live, n, depth);
    if (!found) {
        dsc_set_error("countdown: no solution found for target %lld (generator bug)", (long long)p->target);
        return -1;
    }
    if (s.steps < o->min_steps) return 0; /* easier than asked: another attempt */

    sbuf sb;
    sb_init(&sb, p->prompt, sizeof p->prompt);
    sb_printf(&sb, "Using the numbers ");
    list_numbers(&sb, p->numbers, n);
    sb_printf(&sb, ", write an expression that equals %lld. You may use + - * / and parentheses; each number "
                   "at most once, and not all of them need to be used.", (long long)p->target);

    sb_init(&sb, p->reasoning, sizeof p->reasoning);
    sb_printf(&sb, "target %lld from ", (long long)p->target);
    list_numbers(&sb, p->numbers, n);
    sb_printf(&sb, "; combine two numbers at a time, keeping every result a positive integer\n");
    int64_t left[MAXN];
    int n_left = n;
    for (int i = 0; i < n; i++) left[i] = p->numbers[i];
    for (int k = 0; k < s.steps; k++) {
        const node *a = &s.nodes[s.path_a[k]], *b = &s.nodes[s.path_b[k]], *c = &s.nodes[s.path_out[k]];
        /* remove a and b from the multiset of values left, add c */
        for (int q = 0; q < 2; q++) {
            int64_t v = q ? b->value : a->value;
            for (int i = 0; i < n_left; i++)
                if (left[i] == v) {
                    left[i] = left[--n_left];
                    break;
                }
        }
        left[n_left++] = c->value;
        sb_printf(&sb, "step %d: %lld %c %lld = %lld, left: ", k + 1, (long long)a->value, c->op, (long long)b->value,
                  (long long)c->value);
        list_numbers(&sb, left, n_left);
        sb_printf(&sb, "\n");
    }
    char expr[256];
    sbuf eb;
    sb_init(&eb, expr, sizeof expr);
    print_expr(&s, s.path_out[s.steps - 1], &eb);
    sb_printf(&sb, "check: %s = %lld", expr, (long long)p->target);
    if (sb.overflow || eb.overflow) {
        dsc_set_error("countdown: the worked steps exceed the problem's buffers");
        return -1;
    }
    snprintf(p->answer, sizeof p->answer, "%s", expr);
    return 1;
}
