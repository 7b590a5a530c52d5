/* The CLIP BPE vocabulary, runtime/data/bpe_simple_vocab_16e6.txt.gz, linked
 * into the library byte for byte so that tokenizing needs no file at run time.
 * CMakeLists.txt passes the file's absolute path as KILN_CLIP_VOCAB_GZ; the
 * symbols are hidden so that libkiln.so does not export them. ELF only. */
#ifndef KILN_CLIP_VOCAB_GZ
#error "KILN_CLIP_VOCAB_GZ (the vocabulary's path) is set by CMakeLists.txt"
#endif

__asm__(".pushsection .rodata\n"
        ".balign 16\n"
        ".globl kiln_clip_vocab_gz\n"
        ".hidden kiln_clip_vocab_gz\n"
        ".type kiln_clip_vocab_gz, @object\n"
        "kiln_clip_vocab_gz:\n"
        ".incbin \"" KILN_CLIP_VOCAB_GZ "\"\n"
        ".globl kiln_clip_vocab_gz_end\n"
        ".hidden kiln_clip_vocab_gz_end\n"
        "kiln_clip_vocab_gz_end:\n"
        ".popsection\n");
