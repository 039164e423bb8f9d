/* `e2e codec encode|decode|eval`: the learned codec from the command line, and
 * its rate-distortion evaluation against JPEG from FFmpeg's libavcodec. */
#include <glib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec_tool.h"
#include "e2e.h"
#include "jpeg_ref.h"
#include "plot.h"
#include "rd.h"

/* A BD-rate, or why there is none: curves whose PSNR ranges do not overlap have no common interval. */
static const char *bd_text(double bd, char *buf, size_t n) {
  if (isfinite(bd))
    snprintf(buf, n, "%+.1f%%", bd);
  else
    snprintf(buf, n, "none (the PSNR ranges do not overlap)");
  return buf;
}

/* The model (NULL: the shipped one) in a session using at most `threads` threads (0: all cores). */
static e2e_session *open_session(const char *path, int threads) {
  e2e_slot *slot = e2e_slot_open(NULL, path, E2E_TASK_CODEC);
  e2e_session *s = slot ? e2e_session_new(slot, threads) : NULL;
  e2e_slot_unref(slot);
  if (!s) fprintf(stderr, "e2e codec: %s\n", e2e_last_error());
  return s;
}

static int encode(int argc, char **argv) {
  const char *model = NULL, *in = NULL, *out = NULL, *recon = NULL;
  int quality = CODEC_DEFAULT_QUALITY, threads = 0, refine = 0;
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "--quality") && i + 1 < argc) quality = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--refine") && i + 1 < argc) refine = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--recon") && i + 1 < argc) recon = argv[++i];
    else if (!in) in = argv[i];
    else if (!out) out = argv[i];
    else in = NULL, i = argc;
  }
  if (!in || !out || quality < CODEC_MIN_QUALITY || quality > CODEC_MAX_QUALITY || refine < 0 || refine > CODEC_MAX_REFINE) {
    fprintf(stderr, "usage: e2e codec encode [--quality %d..%d] [--refine 0..%d (encoder effort: steps of latent search)]\n"
                    "                        [--model FILE] [--threads N] [--recon PNG] IN.(png|jpg) OUT.e2el\n",
            CODEC_MIN_QUALITY, CODEC_MAX_QUALITY, CODEC_MAX_REFINE);
    return 2;
  }
  e2e_image im;
  e2e_session *session = open_session(model, threads);
  if (!session) return 1;
  codec_options opts = {.refine_steps = refine};
  if (!e2e_image_load(in, &im)) {
    fprintf(stderr, "e2e codec encode: %s\n", e2e_last_error());
    return 1;
  }
  uint8_t *stream = NULL, *rec = malloc((size_t)im.w * im.h * 3);
  size_t len = 0;
  double t0 = e2e_now_s();
  if (!e2e_codec_encode(session, &opts, quality, im.rgb, im.w, im.h, im.w * 3, &stream, &len, rec)) {
    fprintf(stderr, "e2e codec encode: %s\n", e2e_last_error());
    return 1;
  }
  double ms = (e2e_now_s() - t0) * 1e3;
  GError *err = NULL;
  bool ok = g_file_set_contents(out, (const gchar *)stream, (gssize)len, &err); /* atomic: temp file + rename */
  if (!ok) {
    fprintf(stderr, "e2e codec encode: %s\n", err->message);
    g_error_free(err);
    return 1;
  }
  printf("%s: %dx%d, quality %d -> %zu bytes, %.4f bpp, PSNR-RGB %.2f dB (%.0f ms)\n", out, im.w, im.h, quality, len,
         8.0 * len / ((double)im.w * im.h), e2e_image_psnr(im.rgb, rec, (size_t)im.w * im.h * 3), ms);
  if (recon && !e2e_image_save_png(recon, rec, im.w, im.h)) fprintf(stderr, "e2e codec encode: %s\n", e2e_last_error());
  free(stream);
  free(rec);
  e2e_image_free(&im);
  e2e_session_free(session);
  return 0;
}

static int decode(int argc, char **argv) {
  const char *model = NULL, *in = NULL, *out = NULL;
  int threads = 0;
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
    else if (!in) in = argv[i];
    else if (!out) out = argv[i];
    else in = NULL, i = argc;
  }
  if (!in || !out) {
    fprintf(stderr, "usage: e2e codec decode [--model FILE] [--threads N] IN.e2el OUT.png\n");
    return 2;
  }
  gchar *data = NULL;
  gsize len = 0;
  GError *err = NULL;
  if (!g_file_get_contents(in, &data, &len, &err)) {
    fprintf(stderr, "e2e codec decode: %s\n", err->message);
    g_error_free(err);
    return 1;
  }
  codec_header h;
  if (!codec_parse_header((const uint8_t *)data, len, &h)) {
    fprintf(stderr, "e2e codec decode: %s: %s\n", in, e2e_last_error());
    return 1;
  }
  e2e_session *session = open_session(model, threads);
  if (!session) return 1;
  uint8_t *rgb = malloc((size_t)h.width * h.height * 3);
  double t0 = e2e_now_s();
  if (!rgb || !e2e_codec_decode(session, NULL, (const uint8_t *)data, len, rgb, h.width, h.height)) {
    fprintf(stderr, "e2e codec decode: %s: %s\n", in, rgb ? e2e_last_error() : "out of memory");
    return 1;
  }
  double ms = (e2e_now_s() - t0) * 1e3;
  if (!e2e_image_save_png(out, rgb, h.width, h.height)) {
    fprintf(stderr, "e2e codec decode: %s\n", e2e_last_error());
    return 1;
  }
  printf("%s: %dx%d, quality %d, %zu bytes -> %s (%.0f ms)\n", in, h.width, h.height, h.quality, (size_t)len, out, ms);
  free(rgb);
  g_free(data);
  e2e_session_free(session);
  return 0;
}

/* ---------------------------------------------------------------- eval */

typedef struct {
  double bpp, psnr, msssim;
} rd_point;

static void print_row(const char *codec, const char *setting, const rd_point *p) {
  printf("  %-10s %-10s %7.4f bpp  %6.2f dB  MS-SSIM %.4f\n", codec, setting, p->bpp, p->psnr, p->msssim);
}

static int eval(int argc, char **argv) {
  const char *model = NULL, *dir = NULL, *plot = "codec-rd.png", *ref_dir = NULL, *csv = NULL, *against = NULL;
  int threads = 0, max_images = 0, refine = 0;
  bool per_image = false, bad = false;
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
    else if (!strcmp(argv[i], "--dir") && i + 1 < argc) dir = argv[++i];
    else if (!strcmp(argv[i], "--plot") && i + 1 < argc) plot = argv[++i];
    else if (!strcmp(argv[i], "--published") && i + 1 < argc) ref_dir = argv[++i];
    else if (!strcmp(argv[i], "--against") && i + 1 < argc) against = argv[++i];
    else if (!strcmp(argv[i], "--csv") && i + 1 < argc) csv = argv[++i];
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--max-images") && i + 1 < argc) max_images = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--per-image")) per_image = true;
    else if (!strcmp(argv[i], "--refine") && i + 1 < argc) refine = atoi(argv[++i]);
    else bad = true;
  }
  if (bad || refine < 0 || refine > CODEC_MAX_REFINE) {
    fprintf(stderr, "usage: e2e codec eval [--model FILE] [--dir FOLDER (default: Kodak)] [--plot PNG] [--csv FILE]\n"
                    "                      [--published FOLDER (CompressAI results)] [--threads N] [--max-images N] [--per-image]\n"
                    "                      [--against CURVE.json (one more curve in CompressAI's format, e.g. another model's,\n"
                    "                       plotted and its BD-rate printed)]\n"
                    "                      [--refine 0..%d (encoder effort: steps of latent search per picture)]\n", CODEC_MAX_REFINE);
    return 2;
  }
  const char *root = getenv("E2E_SHARED_DATA") ? getenv("E2E_SHARED_DATA") : "../shared/data";
  char dbuf[1024], rbuf[1024];
  if (!dir) snprintf(dbuf, sizeof dbuf, "%s/codec/kodak", root), dir = dbuf;
  if (!ref_dir) snprintf(rbuf, sizeof rbuf, "%s/codec/compressai-kodak-results", root), ref_dir = rbuf;
  e2e_session *session = open_session(model, threads);
  if (!session) return 1;
  codec_options opts = {.refine_steps = refine};
  image_set_t set = {0};
  if (!codec_load_folder(dir, &set, max_images)) {
    fprintf(stderr, "e2e codec eval: %s\n", e2e_last_error());
    return 1;
  }
  static const int JPEG_Q[] = {31, 24, 18, 14, 11, 9, 7, 5, 4, 3, 2};
  enum { NJ = sizeof JPEG_Q / sizeof JPEG_Q[0] };
  static const int WEBP_Q[] = {5, 15, 30, 50, 70, 85, 95};
  enum { NW = sizeof WEBP_Q / sizeof WEBP_Q[0] };
  bool have_webp = jpeg_ref_available("libwebp");
  rd_point ours[CODEC_MAX_QUALITY] = {{0}}, jpeg[NJ] = {{0}}, webp[NW] = {{0}};
  double enc_ms = 0, dec_ms = 0;
  int mismatches = 0;
  FILE *cf = csv ? fopen(csv, "w") : NULL;
  if (cf) fprintf(cf, "image,codec,setting,bytes,bpp,psnr_rgb,ms_ssim\n");
  printf("e2ecodec model %08x on %d images of %s (%d threads, %d refinement steps)\n",
         e2e_model_describe(e2e_session_model(session))->id, set.n, dir, threads ? threads : nn_get_num_threads(), refine);
  for (int i = 0; i < set.n; i++) {
    const e2e_image *im = &set.im[i];
    size_t npx = (size_t)im->w * im->h;
    uint8_t *rec = malloc(npx * 3), *dec = malloc(npx * 3);
    for (int q = 1; q <= CODEC_MAX_QUALITY; q++) {
      uint8_t *stream = NULL;
      size_t len = 0;
      double t0 = e2e_now_s();
      if (!e2e_codec_encode(session, &opts, q, im->rgb, im->w, im->h, im->w * 3, &stream, &len, rec)) {
        fprintf(stderr, "e2e codec eval: %s: %s\n", set.names[i], e2e_last_error());
        return 1;
      }
      double t1 = e2e_now_s();
      if (!e2e_codec_decode(session, NULL, stream, len, dec, im->w, im->h)) {
        fprintf(stderr, "e2e codec eval: %s: decoding: %s\n", set.names[i], e2e_last_error());
        return 1;
      }
      double t2 = e2e_now_s();
      enc_ms += (t1 - t0) * 1e3;
      dec_ms += (t2 - t1) * 1e3;
      if (memcmp(rec, dec, npx * 3) != 0) mismatches++; /* decoder must equal the encoder's reconstruction */
      rd_point p = {8.0 * len / npx, e2e_image_psnr(im->rgb, dec, npx * 3), rd_ms_ssim(im->rgb, dec, im->w, im->h)};
      ours[q - 1].bpp += p.bpp / set.n, ours[q - 1].psnr += p.psnr / set.n, ours[q - 1].msssim += p.msssim / set.n;
      if (cf) fprintf(cf, "%s,e2ecodec,%d,%zu,%.5f,%.4f,%.5f\n", set.names[i], q, len, p.bpp, p.psnr, p.msssim);
      if (per_image) {
        char s[32];
        snprintf(s, sizeof s, "%s q%d", set.names[i], q);
        print_row("e2ecodec", s, &p);
      }
      free(stream);
    }
    for (int k = 0; k < NJ + (have_webp ? NW : 0); k++) {
      bool is_jpeg = k < NJ;
      int setting = is_jpeg ? JPEG_Q[k] : WEBP_Q[k - NJ];
      size_t bytes = 0;
      char err[256];
      if (!jpeg_ref_roundtrip(is_jpeg ? "mjpeg" : "libwebp", im->rgb, im->w, im->h, setting, &bytes, dec, err, sizeof err)) {
        fprintf(stderr, "e2e codec eval: %s: %s\n", set.names[i], err);
        return 1;
      }
      rd_point p = {8.0 * bytes / npx, e2e_image_psnr(im->rgb, dec, npx * 3), rd_ms_ssim(im->rgb, dec, im->w, im->h)};
      rd_point *acc = is_jpeg ? &jpeg[k] : &webp[k - NJ];
      acc->bpp += p.bpp / set.n, acc->psnr += p.psnr / set.n, acc->msssim += p.msssim / set.n;
      if (cf) fprintf(cf, "%s,%s,%d,%zu,%.5f,%.4f,%.5f\n", set.names[i], is_jpeg ? "jpeg" : "webp", setting, bytes, p.bpp, p.psnr, p.msssim);
    }
    free(rec);
    free(dec);
    fprintf(stderr, "\r  %d/%d images", i + 1, set.n);
  }
  fprintf(stderr, "\n");
  if (cf) fclose(cf);
  printf("averages over %d images:\n", set.n);
  for (int q = 0; q < CODEC_MAX_QUALITY; q++) {
    char s[16];
    snprintf(s, sizeof s, "q%d", q + 1);
    print_row("e2ecodec", s, &ours[q]);
  }
  for (int k = 0; k < NJ; k++) {
    char s[16];
    snprintf(s, sizeof s, "qscale %d", JPEG_Q[k]);
    print_row("jpeg", s, &jpeg[k]);
  }
  for (int k = 0; have_webp && k < NW; k++) {
    char s[16];
    snprintf(s, sizeof s, "q %d", WEBP_Q[k]);
    print_row("webp", s, &webp[k]);
  }
  double ob[CODEC_MAX_QUALITY], op[CODEC_MAX_QUALITY], jb[NJ], jp[NJ], wb[NW], wp[NW];
  for (int q = 0; q < CODEC_MAX_QUALITY; q++) ob[q] = ours[q].bpp, op[q] = ours[q].psnr;
  for (int k = 0; k < NJ; k++) jb[k] = jpeg[k].bpp, jp[k] = jpeg[k].psnr;
  for (int k = 0; k < NW; k++) wb[k] = webp[k].bpp, wp[k] = webp[k].psnr;
  double bd_jpeg = rd_bd_rate(jb, jp, NJ, ob, op, CODEC_MAX_QUALITY);
  char bd_s[64];
  printf("BD-rate of e2ecodec vs JPEG (libavcodec mjpeg, 4:2:0, optimal Huffman), PSNR-RGB: %s\n",
         bd_text(bd_jpeg, bd_s, sizeof bd_s));
  if (have_webp)
    printf("BD-rate of e2ecodec vs WebP (libavcodec libwebp): %s\n",
           bd_text(rd_bd_rate(wb, wp, NW, ob, op, CODEC_MAX_QUALITY), bd_s, sizeof bd_s));
  printf("e2ecodec range: %.3f..%.3f bpp; mean encode %.0f ms, decode %.0f ms per image; decoder == encoder "
         "reconstruction on %d/%d streams\n",
         ob[0], ob[CODEC_MAX_QUALITY - 1], enc_ms / (set.n * CODEC_MAX_QUALITY), dec_ms / (set.n * CODEC_MAX_QUALITY),
         set.n * CODEC_MAX_QUALITY - mismatches, set.n * CODEC_MAX_QUALITY);
  /* published curves (CompressAI's Kodak results) for the plot and for context */
  static const char *PUBLISHED[] = {"jpeg.json", "webp.json", "bpg_444_x265_ycbcr.json", "vtm.json",
                                    "compressai-bmshj2018-hyperprior_mse_cpu.json"};
  enum { NP = sizeof PUBLISHED / sizeof PUBLISHED[0] };
  rd_curve pub[NP + 1];
  plot_series series[4 + NP];
  int ns = 0;
  series[ns++] = (plot_series){.label = "e2ecodec (this model, measured)", .x = ob, .y = op, .n = CODEC_MAX_QUALITY, .markers = true};
  series[ns++] = (plot_series){.label = "JPEG libavcodec (measured)", .x = jb, .y = jp, .n = NJ, .markers = true};
  if (have_webp) series[ns++] = (plot_series){.label = "WebP libavcodec (measured)", .x = wb, .y = wp, .n = NW, .markers = true};
  for (int k = 0; k < NP + (against != NULL); k++) {
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", ref_dir, k < NP ? PUBLISHED[k] : "");
    if (k == NP) snprintf(path, sizeof path, "%s", against);
    if (!rd_load_curve(path, &pub[k])) {
      fprintf(stderr, "e2e codec eval: published curve %s not found or unreadable; left out\n", path);
      continue;
    }
    /* keep the plot on the range where the comparison happens */
    int n = 0;
    for (int i = 0; i < pub[k].n; i++)
      if (pub[k].bpp[i] <= 2.0) pub[k].bpp[n] = pub[k].bpp[i], pub[k].psnr[n++] = pub[k].psnr[i];
    pub[k].n = n;
    char *label = g_strdup_printf(k < NP ? "%s (published)" : "%s", pub[k].name);
    snprintf(pub[k].name, sizeof pub[k].name, "%s", label);
    g_free(label);
    series[ns++] = (plot_series){.label = pub[k].name, .x = pub[k].bpp, .y = pub[k].psnr, .n = pub[k].n};
    double bd = rd_bd_rate(pub[k].bpp, pub[k].psnr, pub[k].n, ob, op, CODEC_MAX_QUALITY);
    if (isfinite(bd)) printf("  BD-rate vs %s: %+.1f%%\n", pub[k].name, bd);
  }
  char title[160];
  snprintf(title, sizeof title, "Kodak rate-distortion (e2ecodec BD-rate vs JPEG %s)", bd_text(bd_jpeg, bd_s, sizeof bd_s));
  plot_spec spec = {.title = title, .xlabel = "bits per pixel", .ylabel = "PSNR-RGB (dB)", .width = 1000, .height = 640};
  if (plot && plot_lines_png(plot, &spec, series, ns)) printf("RD plot: %s\n", plot);
  codec_free_set(&set);
  e2e_session_free(session);
  return mismatches ? 1 : 0;
}

int e2e_codec(int argc, char **argv) {
  if (argc >= 1 && !strcmp(argv[0], "encode")) return encode(argc - 1, argv + 1);
  if (argc >= 1 && !strcmp(argv[0], "decode")) return decode(argc - 1, argv + 1);
  if (argc >= 1 && !strcmp(argv[0], "eval")) return eval(argc - 1, argv + 1);
  if (argc >= 1 && !strcmp(argv[0], "eval-video")) return e2e_codec_eval_video(argc - 1, argv + 1);
  fprintf(stderr, "usage: e2e codec encode|decode|eval|eval-video ...\n");
  return 2;
}
