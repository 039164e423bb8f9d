/* e2eoverlay: draws every GstVideoRegionOfInterestMeta on the frame (any
 * detector's, not only ours): a box in a colour fixed per class, and a label
 * with the confidence taken from a "detection" parameter when present. Text
 * is laid out by pango and drawn by cairo, straight into BGRx/BGRA memory. */
#include "gste2eoverlay.h"

#include <math.h>

GST_DEBUG_CATEGORY_STATIC(e2eoverlay_debug);
#define GST_CAT_DEFAULT e2eoverlay_debug

enum { PROP_0, PROP_SHOW_LABELS, PROP_SHOW_CONFIDENCE, PROP_LINE_WIDTH, PROP_FONT };

/* cairo's native formats on little-endian machines */
#define OVERLAY_CAPS GST_VIDEO_CAPS_MAKE("{ BGRx, BGRA }")

G_DEFINE_TYPE(GstE2eOverlay, gst_e2e_overlay, GST_TYPE_VIDEO_FILTER)

static GstStaticPadTemplate sink_t = GST_STATIC_PAD_TEMPLATE("sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS(OVERLAY_CAPS));
static GstStaticPadTemplate src_t = GST_STATIC_PAD_TEMPLATE("src", GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS(OVERLAY_CAPS));

/* Distinct, saturated colours; a class keeps its colour across frames. */
static void class_colour(int cls, const gchar *label, double *r, double *g, double *b) {
  guint h = cls >= 0 ? (guint)cls : g_str_hash(label ? label : "");
  double hue = fmod(h * 0.618033988749895, 1.0) * 6.0, x = 1 - fabs(fmod(hue, 2.0) - 1);
  double c[6][3] = {{1, x, 0}, {x, 1, 0}, {0, 1, x}, {0, x, 1}, {x, 0, 1}, {1, 0, x}};
  int i = (int)hue % 6;
  *r = 0.15 + 0.85 * c[i][0];
  *g = 0.15 + 0.85 * c[i][1];
  *b = 0.15 + 0.85 * c[i][2];
}

static GstFlowReturn transform_frame_ip(GstVideoFilter *filter, GstVideoFrame *frame) {
  GstE2eOverlay *self = GST_E2E_OVERLAY(filter);
  GstBuffer *buf = frame->buffer;
  if (!gst_buffer_get_meta(buf, GST_VIDEO_REGION_OF_INTEREST_META_API_TYPE)) return GST_FLOW_OK;
  int w = GST_VIDEO_FRAME_WIDTH(frame), h = GST_VIDEO_FRAME_HEIGHT(frame);
  cairo_surface_t *surf = cairo_image_surface_create_for_data(
      GST_VIDEO_FRAME_PLANE_DATA(frame, 0),
      GST_VIDEO_FRAME_FORMAT(frame) == GST_VIDEO_FORMAT_BGRA ? CAIRO_FORMAT_ARGB32 : CAIRO_FORMAT_RGB24, w, h,
      GST_VIDEO_FRAME_PLANE_STRIDE(frame, 0));
  cairo_t *cr = cairo_create(surf);
  PangoLayout *layout = pango_cairo_create_layout(cr);
  pango_layout_set_font_description(layout, self->font_desc);
  gpointer state = NULL;
  GstMeta *meta;
  while ((meta = gst_buffer_iterate_meta_filtered(buf, &state, GST_VIDEO_REGION_OF_INTEREST_META_API_TYPE))) {
    GstVideoRegionOfInterestMeta *roi = (GstVideoRegionOfInterestMeta *)meta;
    const gchar *label = g_quark_to_string(roi->roi_type);
    GstStructure *det = gst_video_region_of_interest_meta_get_param(roi, "detection");
    int cls = -1;
    double conf = -1;
    if (det) {
      gst_structure_get_int(det, "class-id", &cls);
      gst_structure_get_double(det, "confidence", &conf);
      const gchar *l = gst_structure_get_string(det, "label");
      if (l) label = l;
    }
    double r, g, b;
    class_colour(cls, label, &r, &g, &b);
    cairo_set_source_rgb(cr, r, g, b);
    cairo_set_line_width(cr, self->line_width);
    cairo_rectangle(cr, roi->x + self->line_width / 2.0, roi->y + self->line_width / 2.0,
                    MAX(0.0, roi->w - (double)self->line_width), MAX(0.0, roi->h - (double)self->line_width));
    cairo_stroke(cr);
    if (!self->show_labels) continue;
    gchar *text = self->show_confidence && conf >= 0 ? g_strdup_printf("%s %.0f%%", label ? label : "?", conf * 100)
                                                     : g_strdup(label ? label : "?");
    pango_layout_set_text(layout, text, -1);
    int tw, th;
    pango_layout_get_pixel_size(layout, &tw, &th);
    double tx = roi->x, ty = roi->y >= (guint)th + 2 ? roi->y - th - 2 : roi->y; /* above the box if room */
    cairo_rectangle(cr, tx, ty, tw + 6, th + 2);
    cairo_fill(cr);
    /* dark or light text, whichever reads better on the label colour */
    double lum = 0.299 * r + 0.587 * g + 0.114 * b;
    cairo_set_source_rgb(cr, lum > 0.55 ? 0 : 1, lum > 0.55 ? 0 : 1, lum > 0.55 ? 0 : 1);
    cairo_move_to(cr, tx + 3, ty + 1);
    pango_cairo_show_layout(cr, layout);
    g_free(text);
  }
  g_object_unref(layout);
  cairo_destroy(cr);
  cairo_surface_flush(surf);
  cairo_surface_destroy(surf);
  return GST_FLOW_OK;
}

static void set_property(GObject *o, guint id, const GValue *v, GParamSpec *ps) {
  GstE2eOverlay *self = GST_E2E_OVERLAY(o);
  GST_OBJECT_LOCK(self);
  switch (id) {
  case PROP_SHOW_LABELS: self->show_labels = g_value_get_boolean(v); break;
  case PROP_SHOW_CONFIDENCE: self->show_confidence = g_value_get_boolean(v); break;
  case PROP_LINE_WIDTH: self->line_width = g_value_get_uint(v); break;
  case PROP_FONT:
    g_free(self->font);
    self->font = g_value_dup_string(v);
    if (self->font_desc) pango_font_description_free(self->font_desc);
    self->font_desc = pango_font_description_from_string(self->font ? self->font : "Sans Bold 12");
    break;
  default: G_OBJECT_WARN_INVALID_PROPERTY_ID(o, id, ps);
  }
  GST_OBJECT_UNLOCK(self);
}

static void get_property(GObject *o, guint id, GValue *v, GParamSpec *ps) {
  GstE2eOverlay *self = GST_E2E_OVERLAY(o);
  GST_OBJECT_LOCK(self);
  switch (id) {
  case PROP_SHOW_LABELS: g_value_set_boolean(v, self->show_labels); break;
  case PROP_SHOW_CONFIDENCE: g_value_set_boolean(v, self->show_confidence); break;
  case PROP_LINE_WIDTH: g_value_set_uint(v, self->line_width); break;
  case PROP_FONT: g_value_set_string(v, self->font); break;
  default: G_OBJECT_WARN_INVALID_PROPERTY_ID(o, id, ps);
  }
  GST_OBJECT_UNLOCK(self);
}

static void finalize(GObject *o) {
  GstE2eOverlay *self = GST_E2E_OVERLAY(o);
  g_free(self->font);
  if (self->font_desc) pango_font_description_free(self->font_desc);
  G_OBJECT_CLASS(gst_e2e_overlay_parent_class)->finalize(o);
}

static void gst_e2e_overlay_class_init(GstE2eOverlayClass *klass) {
  GObjectClass *oc = G_OBJECT_CLASS(klass);
  GstElementClass *ec = GST_ELEMENT_CLASS(klass);
  GST_DEBUG_CATEGORY_INIT(e2eoverlay_debug, "e2eoverlay", 0, "detection overlay");
  oc->set_property = set_property;
  oc->get_property = get_property;
  oc->finalize = finalize;
  GParamFlags rw = G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_PLAYING;
  g_object_class_install_property(oc, PROP_SHOW_LABELS, g_param_spec_boolean("show-labels", "Show labels", "Draw the label above each box", TRUE, rw));
  g_object_class_install_property(oc, PROP_SHOW_CONFIDENCE, g_param_spec_boolean("show-confidence", "Show confidence", "Append the confidence in percent to the label", TRUE, rw));
  g_object_class_install_property(oc, PROP_LINE_WIDTH, g_param_spec_uint("line-width", "Line width", "Box outline width in pixels", 1, 32, 3, rw));
  g_object_class_install_property(oc, PROP_FONT, g_param_spec_string("font", "Font", "Pango font description of the labels", "Sans Bold 12", rw));
  gst_element_class_set_static_metadata(ec, "Detection overlay", "Filter/Editor/Video",
      "Draws GstVideoRegionOfInterestMeta boxes with labels and confidences", "gst-e2e developers");
  gst_element_class_add_static_pad_template(ec, &sink_t);
  gst_element_class_add_static_pad_template(ec, &src_t);
  GST_VIDEO_FILTER_CLASS(klass)->transform_frame_ip = transform_frame_ip;
}

static void gst_e2e_overlay_init(GstE2eOverlay *self) {
  self->show_labels = TRUE;
  self->show_confidence = TRUE;
  self->line_width = 3;
  self->font = g_strdup("Sans Bold 12");
  self->font_desc = pango_font_description_from_string(self->font);
  gst_base_transform_set_in_place(GST_BASE_TRANSFORM(self), TRUE);
}
