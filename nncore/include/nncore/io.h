/* Checkpoints in the safetensors format (8-byte header length, JSON header,
 * raw little-endian data), with string metadata under "__metadata__".
 * Writes are atomic: a temporary file in the same folder, fsync, rename.
 * Reads validate everything before touching a tensor and refuse bad files
 * with a message naming the problem; they never crash on hostile input. */
#ifndef NNCORE_IO_H
#define NNCORE_IO_H

#include "optim.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct { const char *key, *value; } nn_kv;

/* False when JSON text nests deeper than max_depth: json-glib's parser recurses, so text from a file
 * is checked before it is parsed. */
bool nn_json_nesting_ok(const char *s, size_t n, int max_depth);

/* Largest header accepted (the format caps it at 100 MB; we do too). */
#define NN_ST_MAX_HEADER (100u * 1024u * 1024u)

bool nn_safetensors_save(const char *path, const nn_params *tensors, const nn_kv *meta, int n_meta);

typedef struct nn_st_file nn_st_file;
/* Reads and validates the whole file. NULL + nn_last_error() on any problem. */
nn_st_file *nn_st_open(const char *path);
/* The same from memory (the bytes are copied). */
nn_st_file *nn_st_open_memory(const void *data, size_t size, const char *what);
void nn_st_close(nn_st_file *f);
int nn_st_count(const nn_st_file *f);
const char *nn_st_name(const nn_st_file *f, int i);
/* Metadata value for key, or NULL. */
const char *nn_st_meta(const nn_st_file *f, const char *key);
/* The i-th metadata entry (0 <= i < nn_st_meta_count), in file order: its value, and its key in *key. */
int nn_st_meta_count(const nn_st_file *f);
const char *nn_st_meta_at(const nn_st_file *f, int i, const char **key);
/* A persistent copy of a tensor, or NULL if absent. */
nn_tensor *nn_st_get(const nn_st_file *f, const char *name);
/* Copies every tensor of `p` from the file, checking dtype and shape.
 * strict: also refuse files with tensors `p` does not have (prefix filter aside). */
bool nn_st_load_params(const nn_st_file *f, nn_params *p, const char *prefix, bool strict);

/* A training checkpoint: parameters under "model.", optimizer state under
 * "optim.", and metadata (yours plus "step" and "optimizer"). */
bool nn_checkpoint_save(const char *path, const nn_params *model, const nn_optim *opt,
                        const nn_kv *meta, int n_meta);
bool nn_checkpoint_load(const char *path, nn_params *model, nn_optim *opt);
/* The same from an opened file (path names it in messages). */
bool nn_checkpoint_load_file(const nn_st_file *f, const char *path, nn_params *model, nn_optim *opt);

#ifdef __cplusplus
}
#endif
#endif
