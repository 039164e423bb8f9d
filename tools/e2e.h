/* Sub-commands of the `e2e` tool. */
#ifndef E2E_TOOL_H
#define E2E_TOOL_H

#include <time.h>

/* Monotonic seconds, for progress and ETA lines. */
static inline double e2e_now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int e2e_demo(int argc, char **argv);
int e2e_train_detect(int argc, char **argv);
int e2e_eval_detect(int argc, char **argv);
int e2e_train_codec(int argc, char **argv);
int e2e_codec(int argc, char **argv);
int e2e_codec_eval_video(int argc, char **argv);
int e2e_import(int argc, char **argv);
int e2e_graph(int argc, char **argv);
int e2e_detect_images(int argc, char **argv);
int e2e_asr_features(int argc, char **argv);
int e2e_train_asr(int argc, char **argv);
int e2e_asr_files(int argc, char **argv);
int e2e_eval_asr(int argc, char **argv);
int e2e_tts(int argc, char **argv);
int e2e_tts_features(int argc, char **argv);
int e2e_train_tts(int argc, char **argv);
int e2e_eval_tts(int argc, char **argv);

#endif
