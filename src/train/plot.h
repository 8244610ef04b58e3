/* plot.h: a line chart as a standalone SVG file (no dependency): the training and validation loss
 * curves, openable in any browser. */
#ifndef DSC_TRAIN_PLOT_H
#define DSC_TRAIN_PLOT_H

#include "dsc.h"

typedef struct {
    const char *name;
    const char *color;   /* CSS colour */
    const double *x, *y;
    int n;
} plot_series;

/* Writes an SVG with the series on shared axes (atomic write). */
dsc_status plot_svg(const char *path, const char *title, const char *xlabel, const char *ylabel,
                    const plot_series *series, int n_series);

#endif
