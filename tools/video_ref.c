/* x264 and MJPEG through libavcodec over a whole sequence (see video_ref.h): RGB -> YUV 4:2:0 (swscale) ->
 * encoder -> decoder -> RGB, frames counted in display order. */
#include "video_ref.h"

#include <libavcodec/avcodec.h>
#include <libavutil/imgutils.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>
#include <stdio.h>
#include <string.h>

const char *video_ref_name(video_ref_codec codec) {
  return codec == VIDEO_REF_X264 ? "x264" : codec == VIDEO_REF_X264_INTRA ? "x264-intra" : "mjpeg";
}

bool video_ref_available(video_ref_codec codec) {
  return avcodec_find_encoder_by_name(codec == VIDEO_REF_MJPEG ? "mjpeg" : "libx264") != NULL;
}

/* Decodes what the encoder gave, converting each decoded frame into out in order. */
static bool drain_decoder(AVCodecContext *dc, AVFrame *g, struct SwsContext **to_rgb, uint8_t *out, int n, int w, int h,
                          int *got) {
  for (;;) {
    int r = avcodec_receive_frame(dc, g);
    if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return true;
    if (r < 0) return false;
    if (*got >= n) continue;
    if (!*to_rgb)
      *to_rgb = sws_getContext(w, h, (enum AVPixelFormat)g->format, w, h, AV_PIX_FMT_RGB24,
                               SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT, NULL, NULL, NULL);
    if (!*to_rgb) return false;
    uint8_t *dst[4] = {out + (size_t)*got * w * h * 3};
    int ds[4] = {w * 3};
    sws_scale(*to_rgb, (const uint8_t *const *)g->data, g->linesize, 0, h, dst, ds);
    (*got)++;
  }
}

static bool drain_encoder(AVCodecContext *ec, AVCodecContext *dc, AVPacket *pkt, AVFrame *g, struct SwsContext **to_rgb,
                          uint8_t *out, int n, int w, int h, int *got, size_t *bytes) {
  for (;;) {
    int r = avcodec_receive_packet(ec, pkt);
    if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return true;
    if (r < 0) return false;
    *bytes += (size_t)pkt->size;
    bool ok = avcodec_send_packet(dc, pkt) >= 0 && drain_decoder(dc, g, to_rgb, out, n, w, h, got);
    av_packet_unref(pkt);
    if (!ok) return false;
  }
}

bool video_ref_roundtrip(video_ref_codec codec, const uint8_t *frames, int n, int w, int h, int fps_n, int fps_d,
                         int setting, size_t *bytes, uint8_t *out, char *err, size_t err_len) {
  av_log_set_level(AV_LOG_ERROR);
  bool ok = false, is_jpeg = codec == VIDEO_REF_MJPEG;
  const AVCodec *enc = avcodec_find_encoder_by_name(is_jpeg ? "mjpeg" : "libx264");
  const AVCodec *dec = enc ? avcodec_find_decoder(enc->id) : NULL;
  AVCodecContext *ec = NULL, *dc = NULL;
  AVFrame *f = av_frame_alloc(), *g = av_frame_alloc();
  AVPacket *pkt = av_packet_alloc();
  struct SwsContext *to_yuv = NULL, *to_rgb = NULL;
  enum AVPixelFormat pf = is_jpeg ? AV_PIX_FMT_YUVJ420P : AV_PIX_FMT_YUV420P;
  int got = 0;
  *bytes = 0;
  if (!enc || !dec) {
    snprintf(err, err_len, "libavcodec has no %s encoder/decoder", video_ref_name(codec));
    goto out;
  }
  ec = avcodec_alloc_context3(enc);
  dc = avcodec_alloc_context3(dec);
  if (!ec || !dc || !f || !g || !pkt) goto oom;
  ec->width = w;
  ec->height = h;
  ec->pix_fmt = pf;
  ec->time_base = (AVRational){fps_d > 0 ? fps_d : 1, fps_n > 0 ? fps_n : 25};
  ec->framerate = (AVRational){fps_n > 0 ? fps_n : 25, fps_d > 0 ? fps_d : 1};
  ec->thread_count = 1;
  dc->thread_count = 1;
  if (is_jpeg) {
    ec->color_range = AVCOL_RANGE_JPEG;
    ec->flags |= AV_CODEC_FLAG_QSCALE;
    ec->global_quality = FF_QP2LAMBDA * setting;
    av_opt_set_int(ec->priv_data, "huffman", 1, 0);
  } else {
    av_opt_set(ec->priv_data, "preset", "medium", 0);
    av_opt_set_double(ec->priv_data, "crf", setting, 0);
    if (codec == VIDEO_REF_X264_INTRA) ec->gop_size = 1; /* as ffmpeg -g 1 */
  }
  if (avcodec_open2(ec, enc, NULL) < 0 || avcodec_open2(dc, dec, NULL) < 0) {
    snprintf(err, err_len, "cannot open %s", video_ref_name(codec));
    goto out;
  }
  f->format = pf;
  f->width = w;
  f->height = h;
  if (av_frame_get_buffer(f, 0) < 0) goto oom;
  to_yuv = sws_getContext(w, h, AV_PIX_FMT_RGB24, w, h, pf, SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT, NULL,
                          NULL, NULL);
  if (!to_yuv) goto oom;
  for (int i = 0; i <= n; i++) {
    int r;
    if (i < n) {
      if (av_frame_make_writable(f) < 0) goto oom;
      const uint8_t *src[4] = {frames + (size_t)i * w * h * 3};
      int ss[4] = {w * 3};
      sws_scale(to_yuv, src, ss, 0, h, f->data, f->linesize);
      f->pts = i;
      if (is_jpeg) f->quality = ec->global_quality;
      r = avcodec_send_frame(ec, f);
    } else {
      r = avcodec_send_frame(ec, NULL);
    }
    if (r < 0 || !drain_encoder(ec, dc, pkt, g, &to_rgb, out, n, w, h, &got, bytes)) {
      snprintf(err, err_len, "%s failed at frame %d", video_ref_name(codec), i);
      goto out;
    }
  }
  if (avcodec_send_packet(dc, NULL) < 0 || !drain_decoder(dc, g, &to_rgb, out, n, w, h, &got) || got != n) {
    snprintf(err, err_len, "%s decoded %d of %d frames", video_ref_name(codec), got, n);
    goto out;
  }
  ok = true;
  goto out;
oom:
  snprintf(err, err_len, "out of memory in libavcodec/swscale");
out:
  sws_freeContext(to_yuv);
  sws_freeContext(to_rgb);
  avcodec_free_context(&ec);
  avcodec_free_context(&dc);
  av_frame_free(&f);
  av_frame_free(&g);
  av_packet_free(&pkt);
  return ok;
}
