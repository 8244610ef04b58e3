/* cmd_init.c: `dsc init`: writes a randomly initialised model directory (config.json and
 * model.safetensors) from a preset or a config.json. */
#include <stdio.h>

#include "cli/args.h"
#include "cli/commands.h"

int cmd_init(int argc, char **argv) {
    arg_option opts[] = {{"preset", true, "a named preset (default small)", NULL},
                         {"config", true, "a Hugging Face style config.json instead of a preset", NULL},
                         {"out", true, "output directory", NULL},
                         {"seed", true, "random seed (default 1)", NULL},
                         {NULL, false, NULL, NULL}};
    int rc = args_parse(argc, argv, opts, "usage: dsc init [--preset NAME | --config FILE] --out DIR [--seed N]");
    if (rc) return rc == 2 ? 0 : 2;
    long long seed;
    if (!args_int(opts, "seed", 1, 0, (long long)1 << 62, &seed)) return 2;
    const char *out = args_get(opts, "out"), *preset = args_get(opts, "preset"), *cfile = args_get(opts, "config");
    if (!out) {
        fprintf(stderr, "dsc init: --out DIR is required\n");
        return 2;
    }
    dsc_config cfg;
    rc = cfile ? dsc_config_load(cfile, &cfg) : dsc_config_preset(preset ? preset : "small", &cfg);
    dsc_model *m = NULL;
    if (rc || dsc_model_create(&cfg, &m) || dsc_model_init(m, (uint64_t)seed) || dsc_model_save(m, out)) {
        fprintf(stderr, "dsc init: %s\n", dsc_last_error());
        dsc_model_free(m);
        return 1;
    }
    printf("wrote %s: %zu parameters (seed %lld)\n", out, dsc_model_num_params(m), seed);
    dsc_model_free(m);
    return 0;
}
