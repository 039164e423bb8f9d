/* JPEG through FFmpeg's libavcodec (mjpeg), the reference codec of `e2e codec eval`:
 * RGB -> YUVJ420P (swscale) -> mjpeg at a fixed qscale -> decode -> RGB. */
#include "jpeg_ref.h"

#include <libavcodec/avcodec.h>
#include <libavutil/imgutils.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>
#include <stdio.h>
#include <string.h>

static bool convert(const uint8_t *const src[4], const int ss[4], enum AVPixelFormat sf, uint8_t *const dst[4],
                    const int ds[4], enum AVPixelFormat df, int w, int h) {
  struct SwsContext *sws = sws_getContext(w, h, sf, w, h, df, SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT,
                                          NULL, NULL, NULL);
  if (!sws) return false;
  sws_scale(sws, src, ss, 0, h, dst, ds);
  sws_freeContext(sws);
  return true;
}

bool jpeg_ref_roundtrip(const char *codec_name, const uint8_t *rgb, int w, int h, int qscale, size_t *bytes,
                        uint8_t *out_rgb, char *err, size_t err_len) {
  av_log_set_level(AV_LOG_ERROR); /* swscale warns about the full-range yuvj formats mjpeg needs */
  bool ok = false;
  const AVCodec *enc = avcodec_find_encoder_by_name(codec_name);
  const AVCodec *dec = enc ? avcodec_find_decoder(enc->id) : NULL;
  AVCodecContext *ec = NULL, *dc = NULL;
  AVFrame *f = av_frame_alloc(), *g = av_frame_alloc();
  AVPacket *pkt = av_packet_alloc();
  bool is_jpeg = !strcmp(codec_name, "mjpeg");
  enum AVPixelFormat pf = is_jpeg ? AV_PIX_FMT_YUVJ420P : AV_PIX_FMT_YUV420P;
  if (!enc || !dec) {
    snprintf(err, err_len, "libavcodec has no %s encoder/decoder", codec_name);
    goto out;
  }
  ec = avcodec_alloc_context3(enc);
  dc = avcodec_alloc_context3(dec);
  if (!ec || !dc || !f || !g || !pkt) goto oom;
  ec->width = w;
  ec->height = h;
  ec->pix_fmt = pf;
  ec->time_base = (AVRational){1, 25};
  ec->flags |= AV_CODEC_FLAG_QSCALE;
  ec->global_quality = FF_QP2LAMBDA * qscale;
  if (is_jpeg) {
    ec->color_range = AVCOL_RANGE_JPEG;
    av_opt_set_int(ec->priv_data, "huffman", 1, 0); /* optimal tables, as libjpeg -optimize */
  } else {
    av_opt_set_int(ec->priv_data, "quality", qscale, 0); /* libwebp: 0..100 */
  }
  if (avcodec_open2(ec, enc, NULL) < 0 || avcodec_open2(dc, dec, NULL) < 0) {
    snprintf(err, err_len, "cannot open %s", codec_name);
    goto out;
  }
  f->format = pf;
  f->width = w;
  f->height = h;
  if (av_frame_get_buffer(f, 0) < 0) goto oom;
  const uint8_t *src[4] = {rgb};
  int ss[4] = {w * 3};
  if (!convert(src, ss, AV_PIX_FMT_RGB24, f->data, f->linesize, pf, w, h)) goto oom;
  f->pts = 0;
  f->quality = ec->global_quality; /* mjpeg takes its qscale per frame */
  if (avcodec_send_frame(ec, f) < 0 || avcodec_send_frame(ec, NULL) < 0 || avcodec_receive_packet(ec, pkt) < 0) {
    snprintf(err, err_len, "%s encoding failed", codec_name);
    goto out;
  }
  *bytes = (size_t)pkt->size;
  if (avcodec_send_packet(dc, pkt) < 0 || avcodec_send_packet(dc, NULL) < 0 || avcodec_receive_frame(dc, g) < 0) {
    snprintf(err, err_len, "%s decoding failed", codec_name);
    goto out;
  }
  uint8_t *dst[4] = {out_rgb};
  int ds[4] = {w * 3};
  if (!convert((const uint8_t *const *)g->data, g->linesize, (enum AVPixelFormat)g->format, dst, ds, AV_PIX_FMT_RGB24, w, h))
    goto oom;
  ok = true;
  goto out;
oom:
  snprintf(err, err_len, "out of memory in libavcodec/swscale");
out:
  avcodec_free_context(&ec);
  avcodec_free_context(&dc);
  av_frame_free(&f);
  av_frame_free(&g);
  av_packet_free(&pkt);
  return ok;
}

bool jpeg_ref_available(const char *codec_name) { return avcodec_find_encoder_by_name(codec_name) != NULL; }
