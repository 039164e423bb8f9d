/* `e2e codec eval-video FILE`: the learned codec on a video, beside x264 (default I/P/B and all-intra) and
 * MJPEG from libavcodec on the same frames: bpp, PSNR-RGB and MS-SSIM (means over frames), coding speed,
 * BD-rates and an RD plot. Frames come through GStreamer (decodebin), so anything it plays will do. */
#include <glib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e.h"
#include "e2e/codec.h"
#include "e2e/detect.h"
#include "e2e/image.h"
#include "plot.h"
#include "rd.h"
#include "video_ref.h"

#ifdef E2E_HAVE_GST
#include <gst/app/gstappsink.h>
#include <gst/gst.h>
#include <gst/video/video.h>

/* Up to max frames (0: all) of path as packed RGB, one malloc'd block. */
static uint8_t *read_frames(const char *path, int max, int *n, int *w, int *h, int *fps_n, int *fps_d) {
  gst_init(NULL, NULL);
  gchar *loc = g_strescape(path, NULL);
  gchar *desc = g_strdup_printf("filesrc location=\"%s\" ! decodebin ! videoconvert ! video/x-raw,format=RGB ! "
                                "appsink name=sink sync=false", loc);
  GError *error = NULL;
  GstElement *pipe = gst_parse_launch(desc, &error);
  g_free(desc);
  g_free(loc);
  if (!pipe) {
    fprintf(stderr, "e2e codec eval-video: %s\n", error ? error->message : "cannot build the reading pipeline");
    g_clear_error(&error);
    return NULL;
  }
  GstElement *sink = gst_bin_get_by_name(GST_BIN(pipe), "sink");
  gst_element_set_state(pipe, GST_STATE_PLAYING);
  uint8_t *frames = NULL;
  size_t cap = 0;
  *n = 0;
  for (;;) {
    if (max > 0 && *n >= max) break;
    GstSample *s = gst_app_sink_pull_sample(GST_APP_SINK(sink));
    if (!s) break;
    GstVideoInfo info;
    GstVideoFrame vf;
    if (!gst_video_info_from_caps(&info, gst_sample_get_caps(s)) ||
        !gst_video_frame_map(&vf, &info, gst_sample_get_buffer(s), GST_MAP_READ)) {
      gst_sample_unref(s);
      break;
    }
    if (*n == 0) *w = info.width, *h = info.height, *fps_n = info.fps_n, *fps_d = info.fps_d;
    size_t fb = (size_t)*w * *h * 3;
    if (info.width == *w && info.height == *h) {
      if ((size_t)(*n + 1) * fb > cap) {
        cap = cap ? cap * 2 : fb * 64;
        frames = g_realloc(frames, cap);
      }
      for (int y = 0; y < *h; y++)
        memcpy(frames + (size_t)*n * fb + (size_t)y * *w * 3,
               (uint8_t *)GST_VIDEO_FRAME_PLANE_DATA(&vf, 0) + (size_t)y * GST_VIDEO_FRAME_PLANE_STRIDE(&vf, 0), (size_t)*w * 3);
      (*n)++;
    }
    gst_video_frame_unmap(&vf);
    gst_sample_unref(s);
  }
  GstMessage *err = gst_bus_pop_filtered(GST_ELEMENT_BUS(pipe), GST_MESSAGE_ERROR);
  if (err && *n == 0) {
    GError *e = NULL;
    gst_message_parse_error(err, &e, NULL);
    fprintf(stderr, "e2e codec eval-video: %s: %s\n", path, e->message);
    g_error_free(e);
  }
  if (err) gst_message_unref(err);
  gst_element_set_state(pipe, GST_STATE_NULL);
  gst_object_unref(sink);
  gst_object_unref(pipe);
  if (*n == 0) {
    g_free(frames);
    return NULL;
  }
  return frames;
}
#endif

typedef struct {
  double bpp, psnr, msssim, enc_fps, dec_fps;
  double recall; /* with --detect: persons found on the decoded frames, of those found on the originals (-1: not measured) */
  double psnr_in, psnr_out; /* with --detect: PSNR-RGB over the pixels inside the originals' person boxes, and outside */
} video_point;

/* --detect: the shipped COCO detector's persons on every frame of the originals are the reference; a coded
 * version's recall is the share of them that the detector still finds on its decoded frames (IoU >= 0.5). */
typedef struct {
  e2e_session *s;
  e2e_detect_params p;
  int person;     /* the label's index */
  det_box *ref;   /* E2E_DETECT_DEFAULT_MAX per frame */
  int *n_ref;
} person_check;

static int persons(person_check *pc, const uint8_t *rgb, int w, int h, det_box *out) {
  det_box all[E2E_DETECT_DEFAULT_MAX];
  int n = e2e_detect_frame(pc->s, &pc->p, rgb, w, h, w * 3, all, E2E_DETECT_DEFAULT_MAX), k = 0;
  for (int i = 0; i < n; i++)
    if (all[i].cls == pc->person) out[k++] = all[i];
  return k;
}

static bool person_check_open(person_check *pc, const uint8_t *frames, int n, int w, int h) {
  char *path = e2e_default_model(E2E_TASK_DETECT);
  e2e_slot *slot = e2e_slot_open(NULL, path, E2E_TASK_DETECT);
  free(path);
  pc->s = slot ? e2e_session_new(slot, 0) : NULL;
  e2e_slot_unref(slot);
  if (!pc->s) return false;
  pc->p = e2e_detect_defaults();
  const e2e_model_info *info = e2e_model_describe(e2e_session_model(pc->s));
  pc->person = -1;
  for (int c = 0; c < info->n_labels; c++)
    if (!strcmp(info->labels[c], "person")) pc->person = c;
  pc->ref = malloc(sizeof(det_box) * E2E_DETECT_DEFAULT_MAX * n);
  pc->n_ref = calloc(n, sizeof(int));
  if (pc->person < 0 || !pc->ref || !pc->n_ref) return false;
  int total = 0;
  for (int i = 0; i < n; i++) total += pc->n_ref[i] = persons(pc, frames + (size_t)i * w * h * 3, w, h, pc->ref + i * E2E_DETECT_DEFAULT_MAX);
  printf("  the detector finds %d persons on the %d original frames (%.1f a frame): the reference for recall\n", total, n,
         (double)total / n);
  return true;
}

static double person_recall(person_check *pc, const uint8_t *dec, int n, int w, int h) {
  int found = 0, total = 0;
  det_box got[E2E_DETECT_DEFAULT_MAX];
  for (int i = 0; i < n; i++) {
    int m = persons(pc, dec + (size_t)i * w * h * 3, w, h, got);
    bool used[E2E_DETECT_DEFAULT_MAX] = {false};
    for (int r = 0; r < pc->n_ref[i]; r++) { /* the reference boxes best first, each matched at most once */
      const det_box *b = pc->ref + i * E2E_DETECT_DEFAULT_MAX + r;
      int best = -1;
      float best_iou = 0.5f;
      for (int k = 0; k < m; k++)
        if (!used[k] && det_iou(b, &got[k]) >= best_iou) best = k, best_iou = det_iou(b, &got[k]);
      if (best >= 0) used[best] = true, found++;
      total++;
    }
  }
  return total ? (double)found / total : -1;
}

/* Whether pixel (x, y) of frame i lies in one of the originals' person boxes. */
static bool in_person(const person_check *pc, int i, int x, int y) {
  const det_box *b = pc->ref + i * E2E_DETECT_DEFAULT_MAX;
  for (int k = 0; k < pc->n_ref[i]; k++)
    if (x >= b[k].x1 && x < b[k].x2 && y >= b[k].y1 && y < b[k].y2) return true;
  return false;
}

/* PSNR-RGB pooled over all frames' pixels inside the person boxes, and over those outside. */
static void person_psnr(const person_check *pc, const uint8_t *orig, const uint8_t *dec, int n, int w, int h, video_point *p) {
  double sse[2] = {0}, count[2] = {0};
  for (int i = 0; i < n; i++)
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++) {
        int in = in_person(pc, i, x, y);
        for (int c = 0; c < 3; c++) {
          size_t k = (((size_t)i * h + y) * w + x) * 3 + c;
          double d = (double)orig[k] - dec[k];
          sse[in] += d * d, count[in] += 1;
        }
      }
  p->psnr_in = count[1] > 0 ? 10 * log10(255.0 * 255.0 / fmax(sse[1] / count[1], 1e-10)) : NAN;
  p->psnr_out = count[0] > 0 ? 10 * log10(255.0 * 255.0 / fmax(sse[0] / count[0], 1e-10)) : NAN;
}

/* The blocks of frame i inside the originals' person boxes (as e2edetect's metas would mark them): 1 there,
 * 0 elsewhere; and block weights: roi there, 1 elsewhere. */
static void person_blocks(const person_check *pc, int i, int w, int h, float roi, uint8_t *inside, float *weights) {
  int cols, rows;
  codec_block_grid(w, h, &cols, &rows);
  memset(inside, 0, (size_t)cols * rows);
  const det_box *b = pc->ref + i * E2E_DETECT_DEFAULT_MAX;
  for (int k = 0; k < pc->n_ref[i]; k++)
    for (int by = (int)fmaxf(0, b[k].y1) / 16; by < rows && by * 16 < b[k].y2; by++)
      for (int bx = (int)fmaxf(0, b[k].x1) / 16; bx < cols && bx * 16 < b[k].x2; bx++) inside[by * cols + bx] = 1;
  for (int k = 0; k < cols * rows; k++) weights[k] = inside[k] ? roi : 1.0f;
}

/* Mean PSNR-RGB and MS-SSIM of n decoded frames against the originals. */
static void measure(const uint8_t *orig, const uint8_t *dec, int n, int w, int h, bool msssim, video_point *p) {
  size_t fb = (size_t)w * h * 3;
  p->psnr = p->msssim = 0;
  for (int i = 0; i < n; i++) {
    p->psnr += e2e_image_psnr(orig + i * fb, dec + i * fb, fb) / n;
    if (msssim) p->msssim += rd_ms_ssim(orig + i * fb, dec + i * fb, w, h) / n;
  }
}

/* Codes the sequence with our codec at one quality and key-frame interval, decodes it with a decoder of its
 * own, and checks that every decoded frame equals the encoder's reconstruction. */
static bool run_ours(e2e_session *s, const uint8_t *frames, int n, int w, int h, double fps, int quality, int key_int,
                     double kbps, const person_check *roi, float roi_weight, int roi_levels, bool msssim, uint8_t *dec,
                     video_point *p, int *mismatches, int *predicted) {
  size_t fb = (size_t)w * h * 3, bytes = 0;
  codec_reference *er = codec_reference_new(), *dr = codec_reference_new();
  uint8_t *rec = malloc(fb);
  int cols, rows;
  codec_block_grid(w, h, &cols, &rows);
  float *weights = roi ? malloc(sizeof(float) * cols * rows) : NULL;
  uint8_t *inside = roi ? malloc((size_t)cols * rows) : NULL;
  bool ok = er && dr && rec && (!roi || (weights && inside));
  double enc_s = 0, dec_s = 0;
  codec_rate_control rc;
  if (kbps > 0) codec_rate_init(&rc, kbps * 1000, fps, quality);
  *mismatches = *predicted = 0;
  for (int i = 0; i < n && ok; i++) {
    uint8_t *stream = NULL;
    size_t len = 0;
    codec_options o = {0};
    bool key = key_int > 0 && i % key_int == 0;
    int q = kbps > 0 ? codec_rate_next(&rc, key || !codec_reference_ready(er, rc.quality, w, h), &o) : quality;
    if (roi) {
      person_blocks(roi, i, w, h, roi_weight > 0 ? roi_weight : 1.0f, inside, weights);
      if (roi_weight > 0) o.block_weights = weights;
      if (roi_levels > 0) o.roi_blocks = inside, o.roi_quality = q + roi_levels > CODEC_MAX_QUALITY ? CODEC_MAX_QUALITY : q + roi_levels;
    }
    double t0 = e2e_now_s();
    ok = e2e_codec_encode_video(s, &o, q, key, frames + i * fb, w, h, w * 3, er, &stream, &len, rec);
    if (ok && kbps > 0) codec_rate_update(&rc, len, (stream[6] & CODEC_FLAG_PREDICTED) != 0, &o);
    double t1 = e2e_now_s();
    ok = ok && e2e_codec_decode_video(s, NULL, stream, len, dec + i * fb, w, h, dr);
    double t2 = e2e_now_s();
    if (!ok) fprintf(stderr, "e2e codec eval-video: frame %d: %s\n", i, e2e_last_error());
    if (ok && memcmp(rec, dec + i * fb, fb) != 0) (*mismatches)++;
    if (ok && (stream[6] & CODEC_FLAG_PREDICTED)) (*predicted)++;
    enc_s += t1 - t0, dec_s += t2 - t1, bytes += len;
    free(stream);
    fprintf(stderr, "\r  q%d: %d/%d frames", q, i + 1, n);
  }
  fprintf(stderr, "\n");
  if (ok) {
    measure(frames, dec, n, w, h, msssim, p);
    p->bpp = 8.0 * bytes / ((double)w * h * n);
    p->enc_fps = n / enc_s, p->dec_fps = n / dec_s;
  }
  codec_reference_free(er);
  codec_reference_free(dr);
  free(rec);
  free(weights);
  free(inside);
  return ok;
}

/* The plain curve's PSNR inside the boxes at rate bpp, linear in log(rate) between its two nearest points;
 * NaN outside its range. */
static double psnr_in_at(const video_point *plain, int n, double bpp) {
  for (int k = 0; k + 1 < n; k++)
    if (bpp >= plain[k].bpp && bpp <= plain[k + 1].bpp) {
      double t = log(bpp / plain[k].bpp) / log(plain[k + 1].bpp / plain[k].bpp);
      return plain[k].psnr_in + t * (plain[k + 1].psnr_in - plain[k].psnr_in);
    }
  return NAN;
}

static void print_point(const char *codec, const char *setting, const video_point *p) {
  printf("  %-12s %-10s %7.4f bpp  %6.2f dB", codec, setting, p->bpp, p->psnr);
  if (p->msssim > 0) printf("  MS-SSIM %.4f", p->msssim);
  if (p->recall >= 0) printf("  person recall %.1f %%, PSNR in boxes %.2f dB, outside %.2f", 100 * p->recall, p->psnr_in, p->psnr_out);
  if (p->enc_fps > 0) printf("  encode %.2f fps, decode %.2f fps", p->enc_fps, p->dec_fps);
  printf("\n");
}

static const char *bd_text(double bd, char *buf, size_t n) {
  if (isfinite(bd)) snprintf(buf, n, "%+.1f%%", bd);
  else snprintf(buf, n, "none (the PSNR ranges do not overlap)");
  return buf;
}

enum { MAX_SETTINGS = 8 };

typedef struct {
  const char *label;
  video_point p[MAX_SETTINGS];
  double bpp[MAX_SETTINGS], psnr[MAX_SETTINGS];
  int n;
} video_curve;

static void curve_add(video_curve *c, const video_point *p) {
  c->p[c->n] = *p;
  c->bpp[c->n] = p->bpp, c->psnr[c->n] = p->psnr;
  c->n++;
}

int e2e_codec_eval_video(int argc, char **argv) {
  const char *model = NULL, *path = NULL, *plot = "codec-video-rd.png", *csv = NULL;
  int threads = 0, max_frames = 0, key_int = 0, qmin = CODEC_MIN_QUALITY, qmax = CODEC_MAX_QUALITY, n_rates = 0;
  double rates[MAX_SETTINGS];
  bool intra = false, msssim = true, bad = false, refs = true, detect = false;
  float roi_weight = 0;
  int roi_levels = 0;
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
    else if (!strcmp(argv[i], "--frames") && i + 1 < argc) max_frames = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--key-int-max") && i + 1 < argc) key_int = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--qualities") && i + 1 < argc && sscanf(argv[++i], "%d..%d", &qmin, &qmax) == 2) continue;
    else if (!strcmp(argv[i], "--intra")) intra = true;
    else if (!strcmp(argv[i], "--detect")) detect = true;
    else if (!strcmp(argv[i], "--roi") && i + 1 < argc) roi_weight = strtof(argv[++i], NULL), detect = true;
    else if (!strcmp(argv[i], "--roi-levels") && i + 1 < argc) roi_levels = atoi(argv[++i]), detect = true;
    else if (!strcmp(argv[i], "--bitrate") && i + 1 < argc) {
      for (char *t = strtok(argv[++i], ","); t && n_rates < MAX_SETTINGS; t = strtok(NULL, ",")) rates[n_rates++] = atof(t);
    }
    else if (!strcmp(argv[i], "--no-ms-ssim")) msssim = false;
    else if (!strcmp(argv[i], "--no-references")) refs = false;
    else if (!strcmp(argv[i], "--plot") && i + 1 < argc) plot = argv[++i];
    else if (!strcmp(argv[i], "--csv") && i + 1 < argc) csv = argv[++i];
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
    else if (argv[i][0] != '-' && !path) path = argv[i];
    else bad = true;
  }
  if (bad || !path || key_int < 0 || roi_levels < 0 || roi_levels > CODEC_MAX_QUALITY || qmin < CODEC_MIN_QUALITY || qmax > CODEC_MAX_QUALITY || qmin > qmax) {
    fprintf(stderr, "usage: e2e codec eval-video [--model FILE] [--frames N] [--key-int-max N (0: only the first)]\n"
                    "                            [--qualities A..B] [--intra (also every frame intra, vs x264 all-intra)]\n"
                    "                            [--bitrate KBPS,KBPS,... (also rate-controlled, starting at level 3)]\n"
                    "                            [--detect (the person detector's recall on decoded frames, against the originals)]\n"
                    "                            [--roi W (also with the persons' blocks weighted W as regions of interest)]\n"
                    "                            [--roi-levels D (also with the persons' blocks coded D levels above the picture's;\n"
                    "                             with --intra, an all-intra pass too)]\n"
                    "                            [--no-ms-ssim] [--no-references] [--plot PNG] [--csv FILE] [--threads N] FILE\n");
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0); /* each result as soon as it is measured: a long run may be cut short */
#ifndef E2E_HAVE_GST
  fprintf(stderr, "e2e codec eval-video: this build has no GStreamer to read videos with\n");
  return 1;
#else
  int n = 0, w = 0, h = 0, fps_n = 0, fps_d = 1;
  uint8_t *frames = read_frames(path, max_frames, &n, &w, &h, &fps_n, &fps_d);
  if (!frames) {
    fprintf(stderr, "e2e codec eval-video: no frames read from %s\n", path);
    return 1;
  }
  e2e_slot *slot = e2e_slot_open(NULL, model, E2E_TASK_CODEC);
  e2e_session *s = slot ? e2e_session_new(slot, threads) : NULL;
  e2e_slot_unref(slot);
  if (!s) {
    fprintf(stderr, "e2e codec eval-video: %s\n", e2e_last_error());
    g_free(frames);
    return 1;
  }
  size_t fb = (size_t)w * h * 3;
  uint8_t *dec = malloc(fb * n);
  FILE *cf = csv ? fopen(csv, "w") : NULL;
  if (cf) fprintf(cf, "codec,setting,bpp,psnr_rgb,ms_ssim,encode_fps,decode_fps\n");
  printf("%s: %d frames of %dx%d at %d/%d fps; e2ecodec model %08x, %d threads\n", path, n, w, h, fps_n, fps_d,
         e2e_model_describe(e2e_session_model(s))->id, threads ? threads : nn_get_num_threads());
  video_curve ours = {.label = "e2ecodec video"}, ours_intra = {.label = "e2ecodec all-intra"},
              ours_roi = {.label = "e2ecodec video, persons as ROI"},
              ours_intra_roi = {.label = "e2ecodec all-intra, persons as ROI"};
  int status = 0;
  person_check pc = {0};
  if (detect && !person_check_open(&pc, frames, n, w, h)) {
    fprintf(stderr, "e2e codec eval-video: the person detector: %s\n", e2e_last_error());
    status = 1;
  }
  double fps = fps_n > 0 ? (double)fps_n / fps_d : 25.0;
  bool roi = roi_weight > 0 || roi_levels > 0;
  /* each target plainly, then (with --roi or --roi-levels) with the persons as regions of interest */
  for (int k = 0; k < n_rates * (roi ? 2 : 1) && !status; k++) {
    int r = roi ? k / 2 : k;
    bool with_roi = roi && k % 2;
    video_point p = {0};
    int mism = 0, pred = 0;
    if (!run_ours(s, frames, n, w, h, fps, CODEC_DEFAULT_QUALITY, key_int, rates[r], with_roi ? &pc : NULL,
                  with_roi ? roi_weight : 0, with_roi ? roi_levels : 0, msssim, dec, &p, &mism, &pred)) {
      status = 1;
      break;
    }
    p.recall = pc.s ? person_recall(&pc, dec, n, w, h) : -1;
    if (pc.s) person_psnr(&pc, frames, dec, n, w, h, &p);
    char set[48];
    snprintf(set, sizeof set, "%.0f kbps", rates[r]);
    print_point(with_roi ? "e2ecodec rate, persons as ROI" : "e2ecodec rate", set, &p);
    printf("    achieved %.1f kbit/s for a target of %.0f (%+.1f %%); decoder == encoder reconstruction on %d/%d frames\n",
           p.bpp * w * h * fps / 1000, rates[r], 100 * (p.bpp * w * h * fps / 1000 / rates[r] - 1), n - mism, n);
    if (mism) status = 1;
    if (cf)
      fprintf(cf, "%s,%.0f,%.5f,%.4f,%.5f,%.3f,%.3f\n", with_roi ? "e2ecodec rate roi" : "e2ecodec rate", rates[r], p.bpp, p.psnr,
              p.msssim, p.enc_fps, p.dec_fps);
  }
  /* passes: predicted pictures, every picture intra (--intra), predicted with the persons as regions of interest
   * (--roi, --roi-levels), and all-intra with them (--intra --roi-levels) */
  for (int pass = 0; pass < 4 && !status; pass++) {
    if ((pass == 1 && !intra) || (pass == 2 && !roi) || (pass == 3 && !(intra && roi_levels > 0)))
      continue;
    video_curve *c = pass == 1 ? &ours_intra : pass == 2 ? &ours_roi : pass == 3 ? &ours_intra_roi : &ours;
    int ki = pass == 1 || pass == 3 ? 1 : key_int;
    for (int q = qmin; q <= qmax; q++) {
      video_point p = {0};
      int mism = 0, pred = 0;
      if (!run_ours(s, frames, n, w, h, fps, q, ki, 0, pass >= 2 ? &pc : NULL, pass == 2 ? roi_weight : 0, roi_levels, msssim,
                    dec, &p, &mism, &pred)) {
        status = 1;
        break;
      }
      p.recall = pc.s ? person_recall(&pc, dec, n, w, h) : -1;
      if (pc.s) person_psnr(&pc, frames, dec, n, w, h, &p);
      char set[48];
      snprintf(set, sizeof set, "q%d", q);
      print_point(c->label, set, &p);
      printf("    %d of %d frames predicted; decoder == encoder reconstruction on %d/%d frames\n", pred, n, n - mism, n);
      const video_curve *plain = pass == 2 ? &ours : pass == 3 ? &ours_intra : NULL;
      double same_bits = plain ? psnr_in_at(plain->p, plain->n, p.bpp) : NAN;
      if (isfinite(same_bits))
        printf("    inside the boxes %+.2f dB against plain coding at the same total bits (%.2f dB there)\n",
               p.psnr_in - same_bits, same_bits);
      if (mism) status = 1;
      if (cf) fprintf(cf, "%s,%d,%.5f,%.4f,%.5f,%.3f,%.3f\n", c->label, q, p.bpp, p.psnr, p.msssim, p.enc_fps, p.dec_fps);
      curve_add(c, &p);
    }
  }
  static const int X264_CRF[] = {43, 40, 37, 34, 31, 28}, INTRA_CRF[] = {37, 34, 31, 28, 25, 22}, MJPEG_Q[] = {24, 12, 6, 3};
  video_curve x264 = {.label = "x264 (medium, I/P/B)"}, x264i = {.label = "x264 all-intra (-g 1)"}, mjpeg = {.label = "MJPEG"};
  struct {
    video_ref_codec codec;
    const int *settings;
    int n;
    video_curve *curve;
  } ref_runs[] = {{VIDEO_REF_X264, X264_CRF, 6, &x264}, {VIDEO_REF_X264_INTRA, INTRA_CRF, 6, &x264i}, {VIDEO_REF_MJPEG, MJPEG_Q, 4, &mjpeg}};
  for (size_t r = 0; refs && !status && r < sizeof ref_runs / sizeof ref_runs[0]; r++) {
    if (!video_ref_available(ref_runs[r].codec)) {
      printf("  (%s: not in this libavcodec)\n", video_ref_name(ref_runs[r].codec));
      continue;
    }
    for (int k = 0; k < ref_runs[r].n; k++) {
      size_t bytes = 0;
      char err[256];
      double t0 = e2e_now_s();
      if (!video_ref_roundtrip(ref_runs[r].codec, frames, n, w, h, fps_n, fps_d, ref_runs[r].settings[k], &bytes, dec, err,
                               sizeof err)) {
        fprintf(stderr, "e2e codec eval-video: %s\n", err);
        status = 1;
        break;
      }
      double t = e2e_now_s() - t0;
      video_point p = {.bpp = 8.0 * bytes / ((double)fb / 3 * n)};
      measure(frames, dec, n, w, h, msssim, &p);
      p.recall = pc.s ? person_recall(&pc, dec, n, w, h) : -1;
      if (pc.s) person_psnr(&pc, frames, dec, n, w, h, &p);
      char set[32];
      snprintf(set, sizeof set, "%s %d", ref_runs[r].codec == VIDEO_REF_MJPEG ? "q" : "crf", ref_runs[r].settings[k]);
      print_point(video_ref_name(ref_runs[r].codec), set, &p);
      printf("    (encode + decode %.1f fps, one thread)\n", n / t);
      if (cf) fprintf(cf, "%s,%d,%.5f,%.4f,%.5f,,\n", video_ref_name(ref_runs[r].codec), ref_runs[r].settings[k], p.bpp, p.psnr, p.msssim);
      curve_add(ref_runs[r].curve, &p);
    }
  }
  char bd[64];
  if (!status && x264.n >= 4 && ours.n >= 4)
    printf("BD-rate (PSNR-RGB) of e2ecodec video (key-int-max %d) vs x264 default: %s\n", key_int,
           bd_text(rd_bd_rate(x264.bpp, x264.psnr, x264.n, ours.bpp, ours.psnr, ours.n), bd, sizeof bd));
  if (!status && x264i.n >= 4 && ours_intra.n >= 4)
    printf("BD-rate (PSNR-RGB) of e2ecodec all-intra vs x264 all-intra: %s\n",
           bd_text(rd_bd_rate(x264i.bpp, x264i.psnr, x264i.n, ours_intra.bpp, ours_intra.psnr, ours_intra.n), bd, sizeof bd));
  if (!status && x264i.n >= 4 && ours.n >= 4)
    printf("BD-rate (PSNR-RGB) of e2ecodec video vs x264 all-intra: %s\n",
           bd_text(rd_bd_rate(x264i.bpp, x264i.psnr, x264i.n, ours.bpp, ours.psnr, ours.n), bd, sizeof bd));
  for (int k = 0; k < 2 && !status; k++) {
    const video_curve *plain = k ? &ours_intra : &ours, *with = k ? &ours_intra_roi : &ours_roi;
    if (plain->n < 4 || with->n < 4) continue;
    double pb[MAX_SETTINGS], pi[MAX_SETTINGS], po[MAX_SETTINGS], rb[MAX_SETTINGS], ri[MAX_SETTINGS], ro[MAX_SETTINGS];
    for (int j = 0; j < plain->n; j++) pb[j] = plain->p[j].bpp, pi[j] = plain->p[j].psnr_in, po[j] = plain->p[j].psnr_out;
    for (int j = 0; j < with->n; j++) rb[j] = with->p[j].bpp, ri[j] = with->p[j].psnr_in, ro[j] = with->p[j].psnr_out;
    /* BD-PSNR, not BD-rate: the regions' curve flattens where their level reaches the top one */
    printf("%s vs %s: BD-PSNR inside the person boxes %+.2f dB, outside them %+.2f dB\n", with->label, plain->label,
           rd_bd_psnr(pb, pi, plain->n, rb, ri, with->n), rd_bd_psnr(pb, po, plain->n, rb, ro, with->n));
  }
  if (!status && plot) {
    plot_series series[7];
    int ns = 0;
    video_curve *all[] = {&ours, &ours_intra, &ours_roi, &ours_intra_roi, &x264, &x264i, &mjpeg};
    for (int k = 0; k < 7; k++)
      if (all[k]->n) series[ns++] = (plot_series){.label = all[k]->label, .x = all[k]->bpp, .y = all[k]->psnr, .n = all[k]->n, .markers = true};
    char title[200];
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    snprintf(title, sizeof title, "%s, %d frames: rate-distortion", base, n);
    plot_spec spec = {.title = title, .xlabel = "bits per pixel", .ylabel = "PSNR-RGB (dB)", .width = 1000, .height = 640,
                      .log_x = true};
    if (plot_lines_png(plot, &spec, series, ns)) printf("RD plot: %s\n", plot);
  }
  if (cf) fclose(cf);
  if (pc.s) e2e_session_free(pc.s);
  free(pc.ref);
  free(pc.n_ref);
  free(dec);
  g_free(frames);
  e2e_session_free(s);
  return status;
#endif
}
