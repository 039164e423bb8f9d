/* e2ecodecparse: splits a video/x-e2e-lic byte stream (e.g. from filesrc)
 * into one buffer per coded picture, using each picture header's payload
 * sizes, and resynchronises on the "E2EL" magic after garbage. Caps and
 * frame durations come from the first header; predicted pictures are delta units.
 * A stream has no index of its own, so in pull mode (a file) the parser reads every picture's header
 * once, jumping from header to header: that gives the exact duration, each picture's timestamp from its
 * number, and a seek index of the intra pictures, so that a seek starts at the intra picture before its
 * target instead of reading the file from the start. Also the type finder. */
#include <string.h>

#include "gste2ecodec.h"

GST_DEBUG_CATEGORY_STATIC(e2ecodecparse_debug);
#define GST_CAT_DEFAULT e2ecodecparse_debug

#define MAX_PICTURE_BYTES (512u << 20) /* anything larger is not a picture we wrote */

struct _GstE2eCodecParse {
  GstBaseParse parent;
  gint width, height, fps_n, fps_d;
  gboolean scanned; /* the pull-mode scan ran (whatever it found) */
  GArray *offsets;  /* guint64: where each picture starts, from the scan; empty in push mode */
};

G_DEFINE_TYPE(GstE2eCodecParse, gst_e2e_codec_parse, GST_TYPE_BASE_PARSE)

static GstStaticPadTemplate sink_t = GST_STATIC_PAD_TEMPLATE("sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS(E2E_LIC_CAPS));
static GstStaticPadTemplate src_t =
    GST_STATIC_PAD_TEMPLATE("src", GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS(E2E_LIC_CAPS ", parsed = (boolean) true"));

static gboolean parse_start(GstBaseParse *parse) {
  GstE2eCodecParse *self = GST_E2E_CODEC_PARSE(parse);
  self->width = self->height = self->fps_n = 0;
  self->fps_d = 1;
  self->scanned = FALSE;
  g_array_set_size(self->offsets, 0);
  gst_base_parse_set_min_frame_size(parse, CODEC_HEADER_BYTES);
  return TRUE;
}

/* The header at d and the picture's whole length, checked against that length (the payload may still be
 * on its way); FALSE for anything that is not a picture header. */
static gboolean peek_header(const guint8 *d, guint64 *total, codec_header *h) {
  /* byte by byte: GST_READ_UINT32_BE loads a possibly unaligned word on x86, which UBSan rightly rejects */
  guint32 zb = (guint32)d[20] << 24 | (guint32)d[21] << 16 | (guint32)d[22] << 8 | d[23];
  guint32 yb = (guint32)d[24] << 24 | (guint32)d[25] << 16 | (guint32)d[26] << 8 | d[27];
  *total = (guint64)CODEC_HEADER_BYTES + zb + yb;
  guint8 probe[CODEC_HEADER_BYTES];
  memcpy(probe, d, CODEC_HEADER_BYTES);
  return *total <= MAX_PICTURE_BYTES && codec_parse_header(probe, (size_t)*total, h);
}

/* Pull mode: reads every picture's header (32 bytes each) from the start, jumping over the payloads, to
 * index the intra pictures and know the exact duration. Stops at the first thing that is not a header:
 * the index then covers the pictures before it, and the duration stays unknown. */
static void scan_stream(GstE2eCodecParse *self, const codec_header *first) {
  GstBaseParse *parse = GST_BASE_PARSE(self);
  GstPad *sink = GST_BASE_PARSE_SINK_PAD(parse);
  self->scanned = TRUE;
  gint64 size = 0;
  if (GST_PAD_MODE(sink) != GST_PAD_MODE_PULL || !gst_pad_peer_query_duration(sink, GST_FORMAT_BYTES, &size) || size <= 0)
    return;
  gint64 t0 = g_get_monotonic_time();
  guint64 off = 0;
  gboolean whole = TRUE;
  while (off < (guint64)size) {
    GstBuffer *buf = NULL;
    if (off + CODEC_HEADER_BYTES > (guint64)size || gst_pad_pull_range(sink, off, CODEC_HEADER_BYTES, &buf) != GST_FLOW_OK) {
      whole = FALSE;
      break;
    }
    guint8 d[CODEC_HEADER_BYTES];
    gsize got = gst_buffer_extract(buf, 0, d, sizeof d);
    gst_buffer_unref(buf);
    guint64 total;
    codec_header h;
    if (got != sizeof d || !peek_header(d, &total, &h) || off + total > (guint64)size) {
      whole = FALSE;
      break;
    }
    g_array_append_val(self->offsets, off);
    if (!h.predicted && first->fps_n > 0) {
      GstClockTime ts = gst_util_uint64_scale(self->offsets->len - 1, (guint64)first->fps_d * GST_SECOND, (guint64)first->fps_n);
      gst_base_parse_add_index_entry(parse, off, ts, TRUE, TRUE);
    }
    off += total;
  }
  if (whole && first->fps_n > 0)
    gst_base_parse_set_duration(parse, GST_FORMAT_TIME,
                                (gint64)gst_util_uint64_scale(self->offsets->len, (guint64)first->fps_d * GST_SECOND,
                                                              (guint64)first->fps_n), 0);
  GST_INFO_OBJECT(self, "indexed %u pictures (%s) in %.1f ms", self->offsets->len, whole ? "the whole stream" : "up to garbage",
                  (g_get_monotonic_time() - t0) / 1000.0);
}

/* The picture number of the picture at offset, from the scan; -1 when the scan did not reach it. */
static gint64 picture_number(GstE2eCodecParse *self, guint64 offset) {
  guint lo = 0, hi = self->offsets->len;
  while (lo < hi) {
    guint mid = lo + (hi - lo) / 2;
    guint64 v = g_array_index(self->offsets, guint64, mid);
    if (v == offset) return mid;
    if (v < offset) lo = mid + 1;
    else hi = mid;
  }
  return -1;
}

static GstFlowReturn parse_handle_frame(GstBaseParse *parse, GstBaseParseFrame *frame, gint *skipsize) {
  GstE2eCodecParse *self = GST_E2E_CODEC_PARSE(parse);
  GstMapInfo map;
  if (!gst_buffer_map(frame->buffer, &map, GST_MAP_READ)) return GST_FLOW_ERROR;
  const guint8 *d = map.data;
  gsize n = map.size;
  GstFlowReturn ret = GST_FLOW_OK;
  if (n < CODEC_HEADER_BYTES) goto more;
  if (memcmp(d, CODEC_MAGIC, 4) != 0) { /* resync on the next magic */
    gsize k = 1;
    while (k + 4 <= n && memcmp(d + k, CODEC_MAGIC, 4) != 0) k++;
    *skipsize = (gint)(k + 4 <= n ? k : n - 3);
    GST_DEBUG_OBJECT(self, "skipping %d bytes of garbage", *skipsize);
    goto out;
  }
  guint64 total;
  codec_header h;
  if (!peek_header(d, &total, &h)) {
    GST_WARNING_OBJECT(self, "bad picture header (%s); resynchronising", e2e_last_error());
    *skipsize = 1;
    goto out;
  }
  if (n < total) {
    gst_base_parse_set_min_frame_size(parse, (guint)total);
    goto more;
  }
  gst_base_parse_set_min_frame_size(parse, CODEC_HEADER_BYTES);
  if (h.width != self->width || h.height != self->height || h.fps_n != self->fps_n || h.fps_d != self->fps_d ||
      !gst_pad_has_current_caps(GST_BASE_PARSE_SRC_PAD(parse))) {
    self->width = h.width, self->height = h.height, self->fps_n = h.fps_n, self->fps_d = h.fps_d ? h.fps_d : 1;
    gchar id[16];
    g_snprintf(id, sizeof id, "%08x", h.model_id);
    GstCaps *caps = gst_caps_new_simple(E2E_LIC_CAPS, "parsed", G_TYPE_BOOLEAN, TRUE, "width", G_TYPE_INT, h.width,
                                        "height", G_TYPE_INT, h.height, "framerate", GST_TYPE_FRACTION, self->fps_n,
                                        self->fps_d, "model-id", G_TYPE_STRING, id, NULL);
    gst_pad_set_caps(GST_BASE_PARSE_SRC_PAD(parse), caps);
    gst_caps_unref(caps);
    if (self->fps_n > 0) gst_base_parse_set_frame_rate(parse, (guint)self->fps_n, (guint)self->fps_d, 0, 0);
  }
  if (!self->scanned) scan_stream(self, &h);
  gint64 k = self->fps_n > 0 ? picture_number(self, frame->offset) : -1;
  if (k >= 0) { /* exact times from the picture's number, not accumulated durations */
    GstClockTime pts = gst_util_uint64_scale((guint64)k, (guint64)self->fps_d * GST_SECOND, (guint64)self->fps_n);
    GST_BUFFER_PTS(frame->buffer) = GST_BUFFER_DTS(frame->buffer) = pts;
    GST_BUFFER_DURATION(frame->buffer) =
        gst_util_uint64_scale((guint64)k + 1, (guint64)self->fps_d * GST_SECOND, (guint64)self->fps_n) - pts;
  }
  if (h.predicted) GST_BUFFER_FLAG_SET(frame->buffer, GST_BUFFER_FLAG_DELTA_UNIT);
  else GST_BUFFER_FLAG_UNSET(frame->buffer, GST_BUFFER_FLAG_DELTA_UNIT);
  gst_buffer_unmap(frame->buffer, &map);
  return gst_base_parse_finish_frame(parse, frame, (gint)total);
more:
  *skipsize = 0;
out:
  gst_buffer_unmap(frame->buffer, &map);
  return ret;
}

static void finalize(GObject *obj) {
  g_array_free(GST_E2E_CODEC_PARSE(obj)->offsets, TRUE);
  G_OBJECT_CLASS(gst_e2e_codec_parse_parent_class)->finalize(obj);
}

static void gst_e2e_codec_parse_init(GstE2eCodecParse *self) {
  self->offsets = g_array_new(FALSE, FALSE, sizeof(guint64));
  GST_PAD_SET_ACCEPT_INTERSECT(GST_BASE_PARSE_SINK_PAD(self));
  GST_PAD_SET_ACCEPT_TEMPLATE(GST_BASE_PARSE_SINK_PAD(self));
}

static void gst_e2e_codec_parse_class_init(GstE2eCodecParseClass *klass) {
  GstElementClass *ec = GST_ELEMENT_CLASS(klass);
  GstBaseParseClass *pc = GST_BASE_PARSE_CLASS(klass);
  G_OBJECT_CLASS(klass)->finalize = finalize;
  GST_DEBUG_CATEGORY_INIT(e2ecodecparse_debug, "e2ecodecparse", 0, "learned image codec stream parser");
  gst_element_class_add_static_pad_template(ec, &sink_t);
  gst_element_class_add_static_pad_template(ec, &src_t);
  gst_element_class_set_static_metadata(ec, "e2e learned image codec parser", "Codec/Parser/Video",
      "Splits e2ecodec streams into pictures", "gst-e2e");
  pc->start = parse_start;
  pc->handle_frame = parse_handle_frame;
}

/* ---------------------------------------------------------------- type finder */

static void typefind(GstTypeFind *tf, gpointer user) {
  const guint8 *d = gst_type_find_peek(tf, 0, 8);
  if (d && memcmp(d, CODEC_MAGIC, 4) == 0 && d[4] >= 1 && d[4] <= CODEC_VERSION && d[5] >= 1 && d[5] <= CODEC_MAX_QUALITY)
    gst_type_find_suggest(tf, GST_TYPE_FIND_MAXIMUM, (GstCaps *)user);
}

gboolean e2e_codec_typefind_register(GstPlugin *plugin) {
  GstCaps *caps = gst_caps_new_empty_simple(E2E_LIC_CAPS);
  return gst_type_find_register(plugin, "video/x-e2e-lic", GST_RANK_PRIMARY, typefind, "e2el", caps, caps,
                                (GDestroyNotify)gst_caps_unref);
}
