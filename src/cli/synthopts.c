/* synthopts.c: see synthopts.h. */
#include "cli/synthopts.h"

bool synth_options_parse(const arg_option *opts, dsc_synth_options *so) {
    struct {
        const char *name;
        int *field;
        long long lo, hi;
    } f[] = {{"max-digits", &so->max_digits, 1, 18},
             {"min-numbers", &so->min_numbers, 2, DSC_COUNTDOWN_MAX_NUMBERS},
             {"max-numbers", &so->max_numbers, 2, DSC_COUNTDOWN_MAX_NUMBERS},
             {"max-number", &so->max_number, 2, 10000},
             {"max-target", &so->max_target, 10, 1000000}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        long long v;
        if (!args_int(opts, f[i].name, *f[i].field, f[i].lo, f[i].hi, &v)) return false;
        *f[i].field = (int)v;
    }
    /* fewer numbers allow fewer operations: the shortest-solution floor follows */
    if (so->min_steps > so->min_numbers - 1) so->min_steps = so->min_numbers - 1;
    return true;
}
