/* A small cairo line-chart renderer: axes with "nice" ticks, a legend, optional log y. */
#include "plot.h"

#include <cairo.h>
#include <math.h>
#include <stdio.h>

static const double palette[][3] = {{0.12, 0.47, 0.71}, {1.0, 0.50, 0.05}, {0.17, 0.63, 0.17}, {0.84, 0.15, 0.16},
                                    {0.58, 0.40, 0.74}, {0.55, 0.34, 0.29}, {0.89, 0.47, 0.76}, {0.50, 0.50, 0.50}};

static double nice_step(double range, int target) {
  double raw = range / target, mag = pow(10, floor(log10(raw))), r = raw / mag;
  return (r < 1.5 ? 1 : r < 3 ? 2 : r < 7 ? 5 : 10) * mag;
}

/* An x value on the chart's axis (its log for a logarithmic one); NaN when it cannot be drawn. */
static double axis_x(const plot_spec *spec, double x) { return !spec->log_x ? x : x > 0 ? log10(x) : NAN; }

/* Draws one chart into the W x H box at the cairo origin. */
static bool draw_chart(cairo_t *cr, const char *path, const plot_spec *spec, const plot_series *s, int ns, int W, int H) {
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (int i = 0; i < ns; i++)
    for (int k = 0; k < s[i].n; k++) {
      double y = s[i].y[k];
      double x = axis_x(spec, s[i].x[k]);
      if (!isfinite(y) || !isfinite(x) || (spec->log_y && y <= 0)) continue;
      if (spec->log_y) y = log10(y);
      x0 = fmin(x0, x);
      x1 = fmax(x1, x);
      y0 = fmin(y0, y);
      y1 = fmax(y1, y);
    }
  if (!isfinite(x0) || !isfinite(y0)) {
    fprintf(stderr, "plot %s: no finite data\n", path);
    return false;
  }
  if (x1 == x0) x1 = x0 + 1;
  if (spec->y_from_zero && !spec->log_y) y0 = fmin(y0, 0);
  if (y1 == y0) y1 = y0 + 1;
  double pad = 0.05 * (y1 - y0);
  if (!(spec->y_from_zero && y0 == 0)) y0 -= pad;
  y1 += pad;
  double L = 80, R = W - 20, T = 50, B = H - 60;
#define PX(x) (L + ((x) - x0) / (x1 - x0) * (R - L))
#define PY(y) (B - ((y) - y0) / (y1 - y0) * (B - T))
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, 12);
  cairo_set_line_width(cr, 1);
  char buf[64];
  cairo_text_extents_t te;
  /* grid and ticks */
  /* ticks: evenly spaced, or at 1, 2 and 5 of each decade on a logarithmic axis */
  double ticks[64];
  int nt = 0;
  if (spec->log_x) {
    for (double d = floor(x0); d <= ceil(x1) && nt < 60; d++)
      for (int k = 0; k < 3; k++) {
        double v = d + log10((double[]){1, 2, 5}[k]);
        if (v >= x0 - 1e-9 && v <= x1 + 1e-9) ticks[nt++] = v;
      }
  } else {
    double xs = nice_step(x1 - x0, 8);
    for (double v = ceil(x0 / xs) * xs; v <= x1 + 1e-9 && nt < 64; v += xs) ticks[nt++] = v;
  }
  for (int t = 0; t < nt; t++) {
    double v = ticks[t];
    cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
    cairo_move_to(cr, PX(v), T);
    cairo_line_to(cr, PX(v), B);
    cairo_stroke(cr);
    snprintf(buf, sizeof buf, "%g", spec->log_x ? pow(10, v) : v);
    cairo_text_extents(cr, buf, &te);
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    cairo_move_to(cr, PX(v) - te.width / 2, B + 16);
    cairo_show_text(cr, buf);
  }
  double ys = spec->log_y ? 1 : nice_step(y1 - y0, 6);
  if (spec->log_y && y1 - y0 < 2) ys = 0.25;
  for (double v = ceil(y0 / ys) * ys; v <= y1 + 1e-9; v += ys) {
    cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
    cairo_move_to(cr, L, PY(v));
    cairo_line_to(cr, R, PY(v));
    cairo_stroke(cr);
    snprintf(buf, sizeof buf, "%.3g", spec->log_y ? pow(10, v) : v);
    cairo_text_extents(cr, buf, &te);
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    cairo_move_to(cr, L - te.width - 6, PY(v) + 4);
    cairo_show_text(cr, buf);
  }
  cairo_set_source_rgb(cr, 0, 0, 0);
  cairo_rectangle(cr, L, T, R - L, B - T);
  cairo_stroke(cr);
  /* labels */
  cairo_set_font_size(cr, 16);
  if (spec->title) {
    cairo_text_extents(cr, spec->title, &te);
    cairo_move_to(cr, (W - te.width) / 2, 30);
    cairo_show_text(cr, spec->title);
  }
  cairo_set_font_size(cr, 13);
  if (spec->xlabel) {
    cairo_text_extents(cr, spec->xlabel, &te);
    cairo_move_to(cr, (L + R - te.width) / 2, H - 20);
    cairo_show_text(cr, spec->xlabel);
  }
  if (spec->ylabel) {
    cairo_save(cr);
    cairo_text_extents(cr, spec->ylabel, &te);
    cairo_move_to(cr, 20, (T + B + te.width) / 2);
    cairo_rotate(cr, -M_PI / 2);
    cairo_show_text(cr, spec->ylabel);
    cairo_restore(cr);
  }
  /* series */
  cairo_rectangle(cr, L, T, R - L, B - T);
  cairo_clip(cr);
  for (int i = 0; i < ns; i++) {
    const double *c = palette[i % 8];
    cairo_set_source_rgb(cr, c[0], c[1], c[2]);
    cairo_set_line_width(cr, 2);
    bool started = false;
    for (int k = 0; k < s[i].n; k++) {
      double y = s[i].y[k];
      if (!isfinite(y) || (spec->log_y && y <= 0)) continue;
      if (spec->log_y) y = log10(y);
      double x = axis_x(spec, s[i].x[k]);
      if (!isfinite(x)) continue;
      if (!started) cairo_move_to(cr, PX(x), PY(y));
      else cairo_line_to(cr, PX(x), PY(y));
      started = true;
    }
    cairo_stroke(cr);
    if (s[i].markers)
      for (int k = 0; k < s[i].n; k++) {
        double y = s[i].y[k];
        if (!isfinite(y) || (spec->log_y && y <= 0)) continue;
        if (spec->log_y) y = log10(y);
        if (!isfinite(axis_x(spec, s[i].x[k]))) continue;
        cairo_arc(cr, PX(axis_x(spec, s[i].x[k])), PY(y), 3.5, 0, 2 * M_PI);
        cairo_fill(cr);
      }
  }
  cairo_reset_clip(cr);
  /* legend */
  cairo_set_font_size(cr, 12);
  double lw = 0; /* the legend sits right-aligned, as wide as its longest label */
  for (int i = 0; i < ns; i++)
    if (s[i].label) {
      cairo_text_extents(cr, s[i].label, &te);
      lw = fmax(lw, te.x_advance);
    }
  double lx = R - lw - 32;
  for (int i = 0; i < ns; i++) {
    if (!s[i].label) continue;
    const double *c = palette[i % 8];
    double ly = T + 14 + 18 * i;
    cairo_set_source_rgb(cr, c[0], c[1], c[2]);
    cairo_rectangle(cr, lx, ly - 8, 14, 10);
    cairo_fill(cr);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    cairo_move_to(cr, lx + 20, ly + 1);
    cairo_show_text(cr, s[i].label);
  }
#undef PX
#undef PY
  return true;
}

static bool write_png(cairo_surface_t *surf, const char *path) {
  cairo_status_t st = cairo_surface_write_to_png(surf, path);
  if (st != CAIRO_STATUS_SUCCESS) {
    fprintf(stderr, "plot: cannot write %s: %s\n", path, cairo_status_to_string(st));
    return false;
  }
  return true;
}

bool plot_lines_png(const char *path, const plot_spec *spec, const plot_series *s, int ns) {
  const plot_panel panel = {*spec, s, ns};
  return plot_panels_png(path, &panel, 1);
}

bool plot_panels_png(const char *path, const plot_panel *panels, int n) {
  int W = 0, H = 0;
  for (int i = 0; i < n; i++) {
    int w = panels[i].spec.width ? panels[i].spec.width : 900, h = panels[i].spec.height ? panels[i].spec.height : 540;
    W = w > W ? w : W;
    H += h;
  }
  cairo_surface_t *surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, W, H);
  cairo_t *cr = cairo_create(surf);
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  bool ok = true;
  for (int i = 0, y = 0; i < n && ok; i++) {
    int h = panels[i].spec.height ? panels[i].spec.height : 540;
    cairo_save(cr);
    cairo_translate(cr, 0, y);
    ok = draw_chart(cr, path, &panels[i].spec, panels[i].series, panels[i].n_series, W, h);
    cairo_restore(cr);
    y += h;
  }
  ok = ok && write_png(surf, path);
  cairo_destroy(cr);
  cairo_surface_destroy(surf);
  return ok;
}

/* ---- heat maps ---- */

/* viridis-like ramp: dark blue, teal, green, yellow */
static void ramp(double t, double *r, double *g, double *b) {
  static const double k[5][3] = {{0.27, 0.00, 0.33}, {0.23, 0.32, 0.55}, {0.13, 0.57, 0.55}, {0.37, 0.79, 0.38}, {0.99, 0.91, 0.14}};
  t = t < 0 ? 0 : t > 1 ? 1 : t;
  double p = t * 4;
  int i = p >= 4 ? 3 : (int)p;
  double f = p - i;
  *r = k[i][0] + f * (k[i + 1][0] - k[i][0]);
  *g = k[i][1] + f * (k[i + 1][1] - k[i][1]);
  *b = k[i][2] + f * (k[i + 1][2] - k[i][2]);
}

bool plot_heatmaps_png(const char *path, const plot_heatmap *maps, int n) {
  int W = 900, panel = 300, H = n * panel;
  cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, W, H);
  cairo_t *cr = cairo_create(s);
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  for (int p = 0; p < n; p++) {
    const plot_heatmap *m = &maps[p];
    double L = 70, R = W - 20, T = p * panel + 35, B = (p + 1) * panel - 45;
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < m->rows * m->cols; i++)
      if (isfinite(m->v[i])) lo = fmin(lo, m->v[i]), hi = fmax(hi, m->v[i]);
    if (!(hi > lo)) hi = lo + 1;
    double cw = (R - L) / m->cols, rh = (B - T) / m->rows;
    for (int r = 0; r < m->rows; r++)
      for (int c = 0; c < m->cols; c++) {
        double cr_, cg, cb;
        ramp((m->v[r * m->cols + c] - lo) / (hi - lo), &cr_, &cg, &cb);
        cairo_set_source_rgb(cr, cr_, cg, cb);
        /* row 0 at the bottom, as frequency and text position are drawn */
        cairo_rectangle(cr, L + c * cw, B - (r + 1) * rh, cw + 0.5, rh + 0.5);
        cairo_fill(cr);
      }
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    cairo_set_font_size(cr, 14);
    cairo_move_to(cr, L, T - 12);
    cairo_show_text(cr, m->title);
    cairo_set_font_size(cr, 12);
    cairo_move_to(cr, L, B + 18);
    cairo_show_text(cr, m->xlabel);
    cairo_save(cr);
    cairo_move_to(cr, L - 12, B);
    cairo_rotate(cr, -M_PI / 2);
    cairo_show_text(cr, m->ylabel);
    cairo_restore(cr);
  }
  cairo_destroy(cr);
  cairo_status_t st = cairo_surface_write_to_png(s, path);
  cairo_surface_destroy(s);
  if (st != CAIRO_STATUS_SUCCESS) {
    fprintf(stderr, "plot %s: %s\n", path, cairo_status_to_string(st));
    return false;
  }
  return true;
}
