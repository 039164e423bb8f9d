/* The `e2e` command: one entry point for demos, training, evaluation and inspection. */
#include "e2e.h"

#include <stdio.h>
#include <string.h>

#include "e2e/codec.h"
#include "nncore/nncore.h"

static int info(int argc, char **argv) {
  if (argc != 1) {
    fprintf(stderr, "usage: e2e info FILE.safetensors\n");
    return 2;
  }
  nn_st_file *f = nn_st_open(argv[0]);
  if (!f) {
    fprintf(stderr, "e2e info: %s\n", nn_last_error());
    return 1;
  }
  int64_t total = 0;
  for (int i = 0; i < nn_st_count(f); i++) {
    nn_tensor *t = nn_st_get(f, nn_st_name(f, i));
    char s[96];
    printf("%-48s %-4s %s\n", nn_st_name(f, i), nn_dtype_name(t->dtype), nn_shape_str(t, s, sizeof s));
    total += nn_numel(t);
    nn_tensor_free(t);
  }
  printf("%d tensors, %lld values\n", nn_st_count(f), (long long)total);
  /* every metadata entry, in file order; a graph is summarised by its size */
  for (int i = 0; i < nn_st_meta_count(f); i++) {
    const char *key = NULL, *value = nn_st_meta_at(f, i, &key);
    if (!strcmp(key, "graph")) printf("%-14s (%zu bytes of JSON)\n", key, strlen(value));
    else printf("%-14s %s\n", key, value);
  }
  nn_st_close(f);
  return 0;
}

static void usage(void) {
  printf("usage: e2e COMMAND [ARGS]\n\n"
         "commands:\n"
         "  demo [--steps N] [--threads N] [--out DIR]\n"
         "        train a small CNN from scratch and show the loss falling\n"
         "  train detect [OPTIONS]   train a detector (e2e train detect --help)\n"
         "  eval detect --model FILE [OPTIONS]   mAP on the held-out split\n"
         "  detect [--model FILE] [--threshold T] IMAGE...   boxes as JSON lines (default: the shipped COCO model)\n"
         "  train codec [OPTIONS]    train the learned image codec (all quality levels)\n"
         "  codec encode [--quality %d..%d] IN.png OUT.e2el | codec decode IN.e2el OUT.png\n"
         "  codec eval [--dir FOLDER]   bpp, PSNR-RGB, MS-SSIM and BD-rate vs JPEG (Kodak by default)\n"
         "  codec eval-video FILE       the same on a video, beside x264 (I/P/B and all-intra) and MJPEG\n"
         "  asr [--model FILE] [--beam N] [--lm TEXT | --grammar digits] FILE...   speech to text with word times\n"
         "  asr features LIST.tsv OUT.safetensors   log-mel feature shard for training (e2e asr features)\n"
         "  train asr [OPTIONS]      train the speech recogniser in resumable stages (e2e train asr --help)\n"
         "  eval asr [OPTIONS] LIST.tsv...   WER/CER per voice or speaker\n"
         "  tts features LIST.tsv OUT.safetensors   log-mel shard of the teacher voice for training\n"
         "  train tts [OPTIONS]      train the speech synthesiser in resumable stages (e2e train tts --help)\n"
         "  tts [--model FILE] \"TEXT\" -o OUT.wav   speech synthesis (default: the shipped voice)\n"
         "  eval tts --out DIR LIST.tsv   held-out sentences spoken: WAVs, attention robustness, speed\n"
         "  tts vocode IN.wav -o OUT.wav   a recording through the synthesiser's features and vocoder\n"
         "  tts normalize < TEXT     the synthesiser's text front end: numbers, dates, times, amounts in words\n"
         "  tts set-contrast MODEL X -o OUT   a copy of a voice that stretches its spectrogram by X (0.5..2)\n"
         "  import MODEL.onnx|model.json -o OUT.safetensors [--head H --labels FILE ...]\n"
         "        an ONNX or TensorFlow.js model onto nncore's graph runtime (e2e import --help)\n"
         "  graph run MODEL [--input X.f32] [--out Y.f32] [--threads N] [--repeat N]\n"
         "        run any graph (ours, .onnx, model.json) on raw input; outputs and the fastest time\n"
         "  info FILE.safetensors\n"
         "        list the tensors and metadata of a model or checkpoint\n"
         "  version\n", CODEC_MIN_QUALITY, CODEC_MAX_QUALITY);
}

int main(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
    usage();
    return argc < 2 ? 2 : 0;
  }
  if (!strcmp(argv[1], "demo")) return e2e_demo(argc - 2, argv + 2);
  if (!strcmp(argv[1], "codec")) return e2e_codec(argc - 2, argv + 2);
  if (!strcmp(argv[1], "info")) return info(argc - 2, argv + 2);
  if (!strcmp(argv[1], "import")) return e2e_import(argc - 2, argv + 2);
  if (!strcmp(argv[1], "graph")) return e2e_graph(argc - 2, argv + 2);
  if (!strcmp(argv[1], "detect")) return e2e_detect_images(argc - 2, argv + 2);
  if (argc >= 3 && !strcmp(argv[1], "train") && !strcmp(argv[2], "detect")) return e2e_train_detect(argc - 3, argv + 3);
  if (argc >= 3 && !strcmp(argv[1], "train") && !strcmp(argv[2], "codec")) return e2e_train_codec(argc - 3, argv + 3);
  if (argc >= 3 && !strcmp(argv[1], "asr") && !strcmp(argv[2], "features")) return e2e_asr_features(argc - 3, argv + 3);
  if (!strcmp(argv[1], "asr")) return e2e_asr_files(argc - 2, argv + 2);
  if (argc >= 3 && !strcmp(argv[1], "eval") && !strcmp(argv[2], "asr")) return e2e_eval_asr(argc - 3, argv + 3);
  if (argc >= 3 && !strcmp(argv[1], "train") && !strcmp(argv[2], "asr")) return e2e_train_asr(argc - 3, argv + 3);
  if (argc >= 3 && !strcmp(argv[1], "tts") && !strcmp(argv[2], "features")) return e2e_tts_features(argc - 3, argv + 3);
  if (!strcmp(argv[1], "tts")) return e2e_tts(argc - 2, argv + 2);
  if (argc >= 3 && !strcmp(argv[1], "train") && !strcmp(argv[2], "tts")) return e2e_train_tts(argc - 3, argv + 3);
  if (argc >= 3 && !strcmp(argv[1], "eval") && !strcmp(argv[2], "tts")) return e2e_eval_tts(argc - 3, argv + 3);
  if (argc >= 3 && !strcmp(argv[1], "eval") && !strcmp(argv[2], "detect")) return e2e_eval_detect(argc - 3, argv + 3);
  if (!strcmp(argv[1], "version")) {
    printf("e2e %d.%d (nncore; cuda %s)\n", NNCORE_VERSION_MAJOR, NNCORE_VERSION_MINOR,
           nn_backend_get(NN_CUDA) ? (nn_device_available(NN_CUDA) ? "built, GPU present" : "built, no GPU") : "not built");
    return 0;
  }
  fprintf(stderr, "e2e: unknown command '%s'\n\n", argv[1]);
  usage();
  return 2;
}
