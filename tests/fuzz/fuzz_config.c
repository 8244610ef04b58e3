/* fuzz_config.c: libFuzzer target for config.json parsing and validation. Any input must give
 * either a configuration that passes validation and whose shape arithmetic is finite, or a
 * one-line error naming the input; never a crash or a sanitizer report. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "model/config.h"

#define REQUIRE(c)                                                                                \
    do {                                                                                          \
        if (!(c)) __builtin_trap();                                                               \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dsc_config c;
    if (config_parse_text((const char *)data, size, "fuzz", &c) != DSC_OK) {
        const char *msg = dsc_last_error();
        REQUIRE(strncmp(msg, "fuzz", 4) == 0 && strchr(msg, '\n') == NULL);
        return 0;
    }
    REQUIRE(dsc_config_validate(&c) == DSC_OK);
    dsc_config_stats s;
    REQUIRE(dsc_config_stats_compute(&c, &s) == DSC_OK);
    REQUIRE(isfinite(s.total_params) && s.total_params > 0 && s.active_params <= s.total_params);
    return 0;
}
