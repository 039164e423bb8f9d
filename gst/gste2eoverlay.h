/* e2eoverlay: draws region-of-interest metas (boxes, labels, confidences). */
#ifndef GST_E2E_OVERLAY_H
#define GST_E2E_OVERLAY_H

#include <gst/video/gstvideofilter.h>
#include <pango/pangocairo.h>

G_BEGIN_DECLS

#define GST_TYPE_E2E_OVERLAY (gst_e2e_overlay_get_type())
G_DECLARE_FINAL_TYPE(GstE2eOverlay, gst_e2e_overlay, GST, E2E_OVERLAY, GstVideoFilter)

struct _GstE2eOverlay {
  GstVideoFilter parent;
  gboolean show_labels, show_confidence;
  guint line_width;
  gchar *font;
  PangoFontDescription *font_desc;
};

G_END_DECLS

#endif
