/* The learned codec's elements: encoder, decoder, parser and the e2ecodec
 * preview bin. Streams are video/x-e2e-lic: coded pictures back to back
 * (models/codec/codec.h), each one a key frame. */
#ifndef GST_E2E_CODEC_H
#define GST_E2E_CODEC_H

#include <gst/base/gstbaseparse.h>
#include <gst/video/gstvideodecoder.h>
#include <gst/video/gstvideoencoder.h>
#include <gst/video/video.h>

#include "e2e/codec.h"
#include "e2eelement.h"

G_BEGIN_DECLS

#define E2E_LIC_CAPS "video/x-e2e-lic"
/* Raw video the encoder (and the preview bin) take. */
#define E2E_CODEC_RAW_CAPS \
  GST_VIDEO_CAPS_MAKE("{ RGB, BGR, RGBx, BGRx, xRGB, xBGR, RGBA, BGRA, ARGB, ABGR, I420, YV12, NV12, NV21, Y42B, Y444 }")

#define GST_TYPE_E2E_CODEC_ENC (gst_e2e_codec_enc_get_type())
G_DECLARE_FINAL_TYPE(GstE2eCodecEnc, gst_e2e_codec_enc, GST, E2E_CODEC_ENC, GstVideoEncoder)

#define GST_TYPE_E2E_CODEC_DEC (gst_e2e_codec_dec_get_type())
G_DECLARE_FINAL_TYPE(GstE2eCodecDec, gst_e2e_codec_dec, GST, E2E_CODEC_DEC, GstVideoDecoder)

#define GST_TYPE_E2E_CODEC_PARSE (gst_e2e_codec_parse_get_type())
G_DECLARE_FINAL_TYPE(GstE2eCodecParse, gst_e2e_codec_parse, GST, E2E_CODEC_PARSE, GstBaseParse)

#define GST_TYPE_E2E_CODEC_BIN (gst_e2e_codec_bin_get_type())
G_DECLARE_FINAL_TYPE(GstE2eCodecBin, gst_e2e_codec_bin, GST, E2E_CODEC_BIN, GstBin)

/* The shipped models, by profile: the quality one (the default) and the live one (narrower, for real time).
 * A decoder whose model property was not set picks whichever of them a stream names. */
#define E2E_CODEC_QUALITY_MODEL "codec/e2ecodec.safetensors"
#define E2E_CODEC_LIVE_MODEL "codec/e2ecodec-live.safetensors"
typedef enum { E2E_CODEC_PROFILE_QUALITY, E2E_CODEC_PROFILE_LIVE } E2eCodecProfile;
#define GST_TYPE_E2E_CODEC_PROFILE (gst_e2e_codec_profile_get_type())
GType gst_e2e_codec_profile_get_type(void);

/* Type finder for "E2EL" streams. */
gboolean e2e_codec_typefind_register(GstPlugin *plugin);

G_END_DECLS

#endif
