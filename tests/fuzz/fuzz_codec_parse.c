/* The e2ecodec stream as a file or a network gives it: the type finder on its first bytes, then
 * e2ecodecparse (a GstBaseParse) splitting it into pictures. The first input byte sets the size of the
 * chunks the rest arrives in (1..256 bytes), so that headers and payloads straddle buffer edges. Every
 * buffer the parser lets out must be one whole picture with a valid header. */
#include <gst/check/gstharness.h>
#include <gst/gst.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e/codec.h"
#include "fuzz.h"

static GstTypeFindFactory *finder;

typedef struct {
  const uint8_t *data;
  size_t size;
  guint best;
} find_state;

static const guint8 *peek(gpointer data, gint64 offset, guint size) {
  find_state *f = data;
  return offset >= 0 && (guint64)offset + size <= f->size ? f->data + offset : NULL;
}

static void suggest(gpointer data, guint probability, GstCaps *caps) {
  find_state *f = data;
  if (probability > f->best) f->best = probability;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  /* our plugin only: scanning every system plugin in this process would leave GLib's interned strings of
   * unloaded modules behind, which LeakSanitizer rightly calls leaks */
  g_setenv("GST_PLUGIN_PATH", E2E_PLUGIN_BUILD_DIR, FALSE);
  g_setenv("GST_PLUGIN_SYSTEM_PATH_1_0", "", TRUE);
  g_setenv("GST_REGISTRY", E2E_PLUGIN_BUILD_DIR "/fuzz-registry.bin", FALSE); /* not the user's registry */
  g_setenv("GST_REGISTRY_FORK", "no", TRUE);
  gst_init(NULL, NULL);
  finder = GST_TYPE_FIND_FACTORY(gst_registry_find_feature(gst_registry_get(), "video/x-e2e-lic", GST_TYPE_TYPE_FIND_FACTORY));
  GstElementFactory *parser = gst_element_factory_find("e2ecodecparse");
  if (!finder || !parser) {
    fprintf(stderr, "fuzz-codec_parse: the e2e plugin is not in %s\n", E2E_PLUGIN_BUILD_DIR);
    abort();
  }
  gst_object_unref(parser);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  size_t chunk = (size_t)data[0] + 1;
  data++, size--;
  find_state fs = {data, size, 0};
  GstTypeFind tf = {.peek = peek, .suggest = suggest, .data = &fs};
  gst_type_find_factory_call_function(finder, &tf);

  GstHarness *h = gst_harness_new("e2ecodecparse");
  gst_harness_set_src_caps_str(h, "video/x-e2e-lic");
  for (size_t off = 0; off < size; off += chunk) {
    size_t n = size - off < chunk ? size - off : chunk;
    if (gst_harness_push(h, gst_buffer_new_memdup(data + off, n)) != GST_FLOW_OK) break;
  }
  gst_harness_push_event(h, gst_event_new_eos());
  for (GstBuffer *b; (b = gst_harness_try_pull(h));) {
    GstMapInfo map;
    codec_header hd;
    if (!gst_buffer_map(b, &map, GST_MAP_READ)) __builtin_trap();
    if (!codec_parse_header(map.data, map.size, &hd)) __builtin_trap(); /* not one whole picture */
    gst_buffer_unmap(b, &map);
    gst_buffer_unref(b);
  }
  gst_harness_teardown(h);
  return 0;
}
