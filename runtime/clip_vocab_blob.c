/* The CLIP BPE vocabulary, runtime/data/bpe_simple_vocab_16e6.txt.gz, linked
 * into the library byte for byte so that tokenizing needs no file at run time.
 * CMakeLists.txt passes the file's absolute path as KILN_CLIP_VOCAB_GZ. */
#include "embed.h"

#ifndef KILN_CLIP_VOCAB_GZ
#error "KILN_CLIP_VOCAB_GZ (the vocabulary's path) is set by CMakeLists.txt"
#endif

KILN_EMBED_FILE(kiln_clip_vocab_gz, KILN_CLIP_VOCAB_GZ);
