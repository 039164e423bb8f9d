/* Line charts to PNG (cairo): loss curves now, rate-distortion plots later. */
#ifndef E2E_PLOT_H
#define E2E_PLOT_H

#include <stdbool.h>

typedef struct {
  const char *label;
  const double *x, *y;
  int n;
  bool markers;  /* draw points as well as the line */
} plot_series;

typedef struct {
  const char *title, *xlabel, *ylabel;
  bool log_y;
  bool log_x; /* a logarithmic x axis (ticks at 1, 2, 5 of each decade) */
  bool y_from_zero; /* the y axis starts at 0 (or below), so that a flat line looks flat */
  int width, height;  /* 0: 900 x 540 */
} plot_spec;

/* Writes a PNG; false (with a message on stderr) when it cannot. */
bool plot_lines_png(const char *path, const plot_spec *spec, const plot_series *series, int n_series);

/* Several charts stacked vertically in one PNG (e.g. loss, bpp and PSNR). */
typedef struct {
  plot_spec spec;
  const plot_series *series;
  int n_series;
} plot_panel;
bool plot_panels_png(const char *path, const plot_panel *panels, int n_panels);

/* Heat maps stacked vertically (a spectrogram, an attention alignment): v [rows][cols], row 0 drawn at
 * the bottom, colours spread over the finite range. */
typedef struct {
  const char *title, *xlabel, *ylabel;
  const float *v;
  int rows, cols;
} plot_heatmap;
bool plot_heatmaps_png(const char *path, const plot_heatmap *maps, int n);

#endif
